"""Build a demo image folder from the real photographs of Debian's wallpaper packages.

Every output image is a crop of one source photograph, resized, with an aspect ratio drawn
log-uniformly in [0.5, 2.0]; a few JPEGs carry an EXIF orientation tag (6 or 8) with the pixels
stored rotated, so that only an orientation-aware loader sees them upright. The images are spread
over a few subfolders (``part0`` .. ``part3``) so that a sorted listing mixes all sources. Two
styles:

- ``web`` (default), what scraped training data looks like: short side uniform in 384–1536 px
  (mean ≈ 1.47 MPix; a crop is resized down when the source is large enough, else up), JPEG
  quality uniform in 80–95 with 15 % 4:4:4 chroma (else 4:2:0) and 10 % progressive, 10 % PNGs.
- ``easy``, the earlier set: short side roughly 384–1600 px but never upscaled more than 1.5×
  (smaller on average), JPEG quality 70–95, all baseline 4:2:0, 10 % PNGs.

The sources come from ``mate-backgrounds`` (``/usr/share/backgrounds/mate/nature/*.jpg`` and
``/usr/share/backgrounds/mate/abstract/Elephants*.jpg``) and ``lomiri-wallpapers-20.04`` (its
photographs only). The same (n, seed, style) gives the same files. Usage::

    python benchmarks/demo_data.py OUT_DIR -n 2000 [--seed 0] [--style web|easy]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps
from tqdm import tqdm

MATE_DIR = Path("/usr/share/backgrounds/mate")
LOMIRI_PACKAGE = "lomiri-wallpapers-20.04"
# lomiri-wallpapers-20.04 also ships flat vector-style artwork; only photographs make good data.
LOMIRI_NON_PHOTOS = frozenset(
    {
        "Fossa_by_Jasper_Roks",  # smooth abstract gradient shapes
        "Infinite-Sea_by_Aury88",  # composited artwork with geometric overlays
        "Painting-Colors_by__herobrine7gamer",  # flat colour stripes
    }
)

MIN_SHORT_SIDE = 384
MAX_SHORT_SIDE = 1600
MIN_ASPECT, MAX_ASPECT = 0.5, 2.0
PNG_FRACTION = 0.10
ROTATED_FRACTION = 0.04
N_SUBFOLDERS = 4
WORKERS = 2
PNG_COMPRESS_LEVEL = 3  # level 6 (Pillow's default) is ~4x slower for ~10 % smaller files
# the web style (scraped training data)
WEB_SHORT_SIDE = (384, 1536)
WEB_QUALITY = (80, 95)
WEB_444_FRACTION = 0.15  # JPEGs with 4:4:4 chroma; the others 4:2:0
WEB_PROGRESSIVE_FRACTION = 0.10
WEB_MIN_CROP_FRACTION = 0.4  # a crop's short side is at least this share of the largest crop
STYLES = ("web", "easy")
DEFAULT_STYLE = "web"
FORMAT_VERSION = 4  # bump when the generated content (or the marker) changes
MARKER = ".complete"
_OUTPUT_NAME = re.compile(r"^\d{5,}_[\w.-]+\.(jpg|png)$")
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class Task:
    """One output image: what to cut from which source, and how to save it."""

    out_path: str
    source: str
    box: tuple[float, float, float, float]  # crop in upright pixels: left, top, right, bottom
    size: tuple[int, int]  # output (width, height), upright
    fmt: str  # "JPEG" or "PNG"
    quality: int
    orientation: int  # 1 (none), 6 or 8
    subsampling: int | None = None  # Pillow's JPEG subsampling: 0 (4:4:4), 2 (4:2:0); None: default
    progressive: bool = False


def find_sources() -> list[Path]:
    """The source photographs: mate nature + Elephants, and lomiri's photographs.

    Raises:
        FileNotFoundError: when none of the packages is installed.
    """
    sources = sorted((MATE_DIR / "nature").glob("*.jpg"))
    sources += sorted((MATE_DIR / "abstract").glob("Elephants*.jpg"))
    try:
        listing = subprocess.run(
            ["dpkg", "-L", LOMIRI_PACKAGE], capture_output=True, text=True, check=True
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        listing = []
    for line in sorted(listing):
        path = Path(line.strip())
        if path.suffix.lower() in (".jpg", ".jpeg", ".png") and path.stem not in LOMIRI_NON_PHOTOS:
            if path.is_file():
                sources.append(path)
    if not sources:
        packages = f"mate-backgrounds {LOMIRI_PACKAGE}"
        raise FileNotFoundError(f"no source photographs found; `apt-get install {packages}`")
    return sources


def upright_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image as displayed, i.e. after its EXIF orientation."""
    with Image.open(path) as im:
        w, h = im.size
        if im.getexif().get(_ORIENTATION_TAG, 1) in (5, 6, 7, 8):
            w, h = h, w
    return w, h


def plan(sources: list[Path], out_dir: Path, n: int, seed: int) -> list[Task]:
    """Draw the n output images (deterministic in seed), ordered by source for the decode cache."""
    rng = random.Random(seed)
    sizes = {p: upright_size(p) for p in sources}
    tasks = []
    for i in range(n):
        src = rng.choice(sources)
        sw, sh = sizes[src]
        aspect = math.exp(rng.uniform(math.log(MIN_ASPECT), math.log(MAX_ASPECT)))
        # the largest crop of that aspect ratio inside the source, then a random fraction of it
        max_w = min(sw, sh * aspect)
        max_short = min(max_w, max_w / aspect)
        short_crop = rng.uniform(0.3, 1.0) * max_short
        # output short side: random in range, but never upscaled more than 1.5x
        short_out = rng.uniform(MIN_SHORT_SIDE, MAX_SHORT_SIDE)
        short_out = max(MIN_SHORT_SIDE, min(short_out, 1.5 * short_crop))
        if aspect >= 1:
            cw, ch = short_crop * aspect, short_crop
            ow, oh = round(short_out * aspect), round(short_out)
        else:
            cw, ch = short_crop, short_crop / aspect
            ow, oh = round(short_out), round(short_out / aspect)
        left = rng.uniform(0, sw - cw)
        top = rng.uniform(0, sh - ch)
        is_png = rng.random() < PNG_FRACTION
        quality = rng.randint(70, 95)
        orientation = 1
        if not is_png and rng.random() < ROTATED_FRACTION:
            orientation = rng.choice((6, 8))
        ext = "png" if is_png else "jpg"
        name = f"{i:05d}_{src.stem.lower()}.{ext}"
        out = out_dir / f"part{i % N_SUBFOLDERS}" / name
        tasks.append(
            Task(
                out_path=str(out),
                source=str(src),
                box=(left, top, left + cw, top + ch),
                size=(ow, oh),
                fmt="PNG" if is_png else "JPEG",
                quality=quality,
                orientation=orientation,
            )
        )
    tasks.sort(key=lambda t: (t.source, t.out_path))
    return tasks


def plan_web(sources: list[Path], out_dir: Path, n: int, seed: int) -> list[Task]:
    """Draw the n output images of the ``web`` style (deterministic in seed), ordered by source.

    Output short side uniform in WEB_SHORT_SIDE, aspect ratio log-uniform in [0.5, 2.0], then the
    largest crop of that aspect ratio in the source, cut to a random 40–100 % of it but never
    below the output size when the source allows (resized down; up only when the source is
    smaller); 10 % PNG; JPEG quality uniform in WEB_QUALITY, 15 % 4:4:4, 10 % progressive.
    """
    rng = random.Random(seed)
    sizes = {p: upright_size(p) for p in sources}
    tasks = []
    for i in range(n):
        src = rng.choice(sources)
        sw, sh = sizes[src]
        aspect = math.exp(rng.uniform(math.log(MIN_ASPECT), math.log(MAX_ASPECT)))
        short_out = rng.randint(*WEB_SHORT_SIDE)
        max_w = min(sw, sh * aspect)
        max_short = min(max_w, max_w / aspect)
        low = max(WEB_MIN_CROP_FRACTION, min(1.0, short_out / max_short))
        short_crop = rng.uniform(low, 1.0) * max_short
        if aspect >= 1:
            cw, ch = short_crop * aspect, short_crop
            ow, oh = round(short_out * aspect), short_out
        else:
            cw, ch = short_crop, short_crop / aspect
            ow, oh = short_out, round(short_out / aspect)
        cw, ch = min(cw, sw), min(ch, sh)
        left = rng.uniform(0, sw - cw)
        top = rng.uniform(0, sh - ch)
        is_png = rng.random() < PNG_FRACTION
        quality = rng.randint(*WEB_QUALITY)
        subsampling = 0 if rng.random() < WEB_444_FRACTION else 2
        progressive = rng.random() < WEB_PROGRESSIVE_FRACTION
        orientation = 1
        if not is_png and rng.random() < ROTATED_FRACTION:
            orientation = rng.choice((6, 8))
        ext = "png" if is_png else "jpg"
        out = out_dir / f"part{i % N_SUBFOLDERS}" / f"{i:05d}_{src.stem.lower()}.{ext}"
        tasks.append(
            Task(
                out_path=str(out),
                source=str(src),
                box=(left, top, left + cw, top + ch),
                size=(ow, oh),
                fmt="PNG" if is_png else "JPEG",
                quality=quality,
                orientation=orientation,
                subsampling=None if is_png else subsampling,
                progressive=progressive and not is_png,
            )
        )
    tasks.sort(key=lambda t: (t.source, t.out_path))
    return tasks


def plan_style(sources: list[Path], out_dir: Path, n: int, seed: int, style: str = DEFAULT_STYLE) -> list[Task]:
    """The tasks of ``style`` ("web": :func:`plan_web`, "easy": :func:`plan`).

    Raises:
        ValueError: an unknown style.
    """
    if style == "web":
        return plan_web(sources, out_dir, n, seed)
    if style == "easy":
        return plan(sources, out_dir, n, seed)
    raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")


def plan_stats(tasks: list[Task]) -> dict[str, float]:
    """The distribution a plan produces: mean / min / max MPix, short side mean / min / max (px),
    the share of aspect ratios (long / short) above 1.5, mean JPEG quality, and the shares of
    PNG, 4:4:4 (of JPEGs), progressive (of JPEGs) and EXIF-rotated files."""
    mpix = [w * h / 1e6 for w, h in (t.size for t in tasks)]
    short = [min(t.size) for t in tasks]
    jpegs = [t for t in tasks if t.fmt == "JPEG"]
    nj = max(1, len(jpegs))
    return {
        "images": len(tasks),
        "mpix_mean": sum(mpix) / len(mpix),
        "mpix_min": min(mpix),
        "mpix_max": max(mpix),
        "short_mean": sum(short) / len(short),
        "short_min": min(short),
        "short_max": max(short),
        "aspect_over_1_5": sum(max(t.size) / min(t.size) > 1.5 for t in tasks) / len(tasks),
        "png": 1 - len(jpegs) / len(tasks),
        "quality_mean": sum(t.quality for t in jpegs) / nj,
        "subsampling_444": sum(t.subsampling == 0 for t in jpegs) / nj,
        "progressive": sum(t.progressive for t in jpegs) / nj,
        "rotated": sum(t.orientation != 1 for t in tasks) / len(tasks),
    }


def format_stats(st: dict[str, float]) -> str:
    """One line of :func:`plan_stats`."""
    return (
        f"{st['images']} images: {st['mpix_mean']:.2f} MPix mean ({st['mpix_min']:.2f}–{st['mpix_max']:.2f}), "
        f"short side {st['short_mean']:.0f} px mean ({st['short_min']}–{st['short_max']}), "
        f"aspect > 1.5: {100 * st['aspect_over_1_5']:.0f} %, PNG {100 * st['png']:.1f} %; JPEG quality "
        f"{st['quality_mean']:.1f} mean, 4:4:4 {100 * st['subsampling_444']:.1f} %, progressive "
        f"{100 * st['progressive']:.1f} %; EXIF-rotated {100 * st['rotated']:.1f} %"
    )


@functools.lru_cache(maxsize=2)
def _load_source(path: str) -> Image.Image:
    """Decode a source photograph once per worker (tasks arrive grouped by source)."""
    with Image.open(path) as im:
        upright = ImageOps.exif_transpose(im)
        return upright.convert("RGB")


def render(task: Task) -> int:
    """Cut, resize and save one output image; returns its size in bytes."""
    src = _load_source(task.source)
    img = src.resize(task.size, Image.Resampling.LANCZOS, box=task.box, reducing_gap=2.0)
    out = Path(task.out_path)
    if task.fmt == "PNG":
        img.save(out, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    else:
        exif = Image.Exif()
        if task.orientation == 6:
            # a viewer rotates orientation-6 pixels 90° clockwise, so store them 90° anticlockwise
            img = img.transpose(Image.Transpose.ROTATE_90)
            exif[_ORIENTATION_TAG] = 6
        elif task.orientation == 8:
            img = img.transpose(Image.Transpose.ROTATE_270)
            exif[_ORIENTATION_TAG] = 8
        extra: dict[str, Any] = {}
        if task.subsampling is not None:
            extra["subsampling"] = task.subsampling
        if task.progressive:
            extra["progressive"] = True
        img.save(out, "JPEG", quality=task.quality, exif=exif.tobytes(), **extra)
    return out.stat().st_size


def _marker(n: int, seed: int, style: str) -> dict[str, Any]:
    return {"n": n, "seed": seed, "style": style, "version": FORMAT_VERSION}


def is_complete(out_dir: Path, n: int, seed: int, style: str = DEFAULT_STYLE) -> bool:
    """True when out_dir holds a finished build with the same n, seed and style."""
    recorded = read_marker(out_dir)
    return all(recorded.get(k) == v for k, v in _marker(n, seed, style).items())


def _remove_previous(out_dir: Path) -> None:
    """Delete the files an earlier (different or interrupted) build wrote, and nothing else."""
    (out_dir / MARKER).unlink(missing_ok=True)
    for sub in out_dir.glob("part*"):
        if not sub.is_dir():
            continue
        for f in sub.iterdir():
            if f.is_file() and _OUTPUT_NAME.match(f.name):
                f.unlink()
        if not any(sub.iterdir()):
            shutil.rmtree(sub)


def build_dataset(out_dir: Path, n: int = 2000, seed: int = 0, style: str = DEFAULT_STYLE) -> Path:
    """Build (or reuse) the demo dataset in out_dir.

    Args:
        out_dir: destination folder (created); images go to ``out_dir/part0`` .. ``part3``.
        n: number of images.
        seed: random seed; the same (n, seed, style) gives the same images.
        style: ``"web"`` (default) or ``"easy"`` (see the module).

    Returns:
        out_dir. When ``out_dir/.complete`` records the same n, seed and style, nothing is
        rebuilt. The marker also holds the distribution (``stats``, see :func:`plan_stats`).

    Raises:
        FileNotFoundError: the wallpaper packages are not installed.
        ValueError: n < 1 or an unknown style.
    """
    out_dir = Path(out_dir)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    if is_complete(out_dir, n, seed, style):
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_previous(out_dir)
    sources = find_sources()
    tasks = plan_style(sources, out_dir, n, seed, style)
    for k in range(min(n, N_SUBFOLDERS)):
        (out_dir / f"part{k}").mkdir(exist_ok=True)
    # spawn, not fork: the caller may already run threads (e.g. datago's Go runtime)
    ctx = multiprocessing.get_context("spawn")
    total = 0
    desc = f"building {n} {style} demo images from {len(sources)} photos"
    with ctx.Pool(WORKERS) as pool, tqdm(total=n, desc=desc, unit="img") as bar:
        for nbytes in pool.imap_unordered(render, tasks, chunksize=8):
            total += nbytes
            bar.update()
    # the EXIF-rotated files, so that a demo can show how a loader handles them
    rotated = sorted(
        Path(t.out_path).relative_to(out_dir).as_posix() for t in tasks if t.orientation != 1
    )
    marker = {**_marker(n, seed, style), "bytes": total, "rotated": rotated, "stats": plan_stats(tasks)}
    (out_dir / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
    return out_dir


def read_marker(out_dir: Path) -> dict[str, Any]:
    """The ``.complete`` record of a finished build (n, seed, style, bytes, rotated files,
    stats), or {}."""
    try:
        data = json.loads((Path(out_dir) / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def main(argv: list[str] | None = None) -> int:
    """CLI: build the dataset and print where, how many bytes, how long it took and the
    distribution of sizes and formats."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path, help="destination folder")
    parser.add_argument("-n", type=int, default=2000, help="number of images (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--style", choices=STYLES, default=DEFAULT_STYLE, help="web (default) or easy")
    args = parser.parse_args(argv)
    reused = is_complete(args.out_dir, args.n, args.seed, args.style)
    t0 = time.perf_counter()
    out = build_dataset(args.out_dir, args.n, args.seed, args.style)
    elapsed = time.perf_counter() - t0
    marker = read_marker(out)
    verb = "reused" if reused else f"built in {elapsed:.1f} s"
    print(f"{out}: {args.n} {args.style} images, {marker.get('bytes', 0) / 1e6:.0f} MB, {verb}")
    print("  " + format_stats(marker["stats"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
