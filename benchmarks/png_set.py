"""Build the web-like PNG set of ``bench_png.sh``, deterministically, from real photos.

Every JPEG photo under ``/usr/share/backgrounds`` (sorted by path, the first ``--photos``) is
scaled (Lanczos) so that its long side is a seeded draw from 512..1536 px, then written four
times with Pillow: RGB and RGBA (8 bits a sample), each with Pillow's defaults (zlib level 6,
adaptive per-row filters) and with ``optimize=True`` (level 9). The RGBA copies carry a soft
alpha: opaque over most of the image, fading to transparent towards one corner, the way cut-outs
and overlays on the web look. The PNGs already under ``/usr/share/backgrounds`` are linked in
too. Files are named ``NN-<photo>-<mode>-<variant>.png``; a file that exists is kept (the set
is a pure function of the photos and the seed).

Usage::

    python benchmarks/png_set.py OUT_DIR [--photos 12] [--seed 11]

Raises SystemExit when ``/usr/share/backgrounds`` holds no JPEG photo.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image

BACKGROUNDS = Path("/usr/share/backgrounds")
MIN_SIDE, MAX_SIDE = 512, 1536


def soft_alpha(width: int, height: int) -> Image.Image:
    """A soft alpha mask: 255 over most of the image, a linear fade to 0 towards the bottom right.

    Args:
        width: mask width in pixels (> 0).
        height: mask height in pixels (> 0).

    Returns:
        An ``L`` (uint8, shape ``(height, width)``) image.
    """
    ys, xs = np.mgrid[0:height, 0:width]
    t = xs / max(1, width - 1) + ys / max(1, height - 1)  # 0 (top left) .. 2 (bottom right)
    alpha = np.clip((1.9 - t) / 0.6, 0.0, 1.0) * 255.0
    return Image.fromarray(np.rint(alpha).astype(np.uint8), "L")


def build(out: Path, photos: int, seed: int) -> list[Path]:
    """Write the PNG set into ``out`` (created when missing) and return its files, sorted.

    Args:
        out: the folder of the set.
        photos: how many JPEG photos to take (the first ones by path).
        seed: seeds the long-side draws.

    Returns:
        The paths of the set, generated and linked-in ones, sorted by name.

    Raises:
        SystemExit: no JPEG photo under ``/usr/share/backgrounds``.
    """
    jpegs = sorted(BACKGROUNDS.rglob("*.jpg"))[:photos]
    if not jpegs:
        raise SystemExit(f"no JPEG photo under {BACKGROUNDS} (apt-get install mate-backgrounds)")
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for i, path in enumerate(jpegs):
        side = rng.randint(MIN_SIDE, MAX_SIDE)
        names = {
            (mode, variant): out / f"{i:02d}-{path.stem}-{mode.lower()}-{variant}.png"
            for mode in ("RGB", "RGBA")
            for variant in ("default", "optimize")
        }
        if all(p.exists() for p in names.values()):
            continue
        with Image.open(path) as im:
            im = im.convert("RGB")
            scale = side / max(im.size)
            size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
            rgb = im.resize(size, Image.Resampling.LANCZOS)
        rgba = rgb.copy()
        rgba.putalpha(soft_alpha(*size))
        for (mode, variant), dest in names.items():
            tmp = dest.with_suffix(".tmp")
            (rgb if mode == "RGB" else rgba).save(tmp, "PNG", optimize=variant == "optimize")
            os.replace(tmp, dest)
    for path in sorted(BACKGROUNDS.rglob("*.png")):
        dest = out / f"bg-{path.parent.name}-{path.name}"
        if not dest.exists():
            os.symlink(path, dest)
    return sorted(out.glob("*.png"))


def main() -> None:
    """Command line: build the set and print its files, one path a line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--photos", type=int, default=12)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    for path in build(args.out, args.photos, args.seed):
        sys.stdout.write(f"{path}\n")


if __name__ == "__main__":
    main()
