"""Benchmark: datago against a Pillow loop and a DataLoader-style process pool, same images.

All loaders read the same files (the first ``--n`` of the demo dataset, listed once) and produce
the same thing: an RGB uint8 (H, W, 3) array of the aspect-ratio bucket nearest to the image,
obtained by a cover resize and a centre crop. The loaders are:

(a) datago: a :class:`datago.DatagoClient` with ``--size`` buckets and its default worker count;
(b) pillow: a single-process loop — ``Image.open``, plain decode (no ``draft()``), RGB, Lanczos
    resize of the centre crop to the bucket, EXIF orientation, ``np.asarray``;
(c) dataloader: the same Pillow function in 2 worker processes (``torch.utils.data.DataLoader``
    when torch is importable, else ``multiprocessing.Pool(2).imap`` with chunks of 8), arrays sent
    back to the parent. The workers are started before timing (persistent workers).

(d) measures the per-sample Python overhead of datago: 2000 tiny images are decoded into the
client's queue first, then draining it with ``get_sample()`` is timed.

The page cache is warmed first; each loader runs ``--repeat`` times and the best run counts.
Run by ``./build.sh bench``::

    python benchmarks/bench_loaders.py [--data ./demo_data] [--n 1000] [--size 512] [--repeat 3]
"""

from __future__ import annotations

import argparse
import bisect
import functools
import math
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import datago
from demo_data import build_dataset

# the extensions datago's filesystem source lists (go/source/filesystem.go)
IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .png .webp .gif .tif .tiff .bmp .avif .heic .heif .jxl .jp2 .ppm .pgm .pnm".split()
)
DOWNSAMPLING_RATIO = 16
MIN_ASPECT_RATIO, MAX_ASPECT_RATIO = 0.5, 2.0
DATASET_SIZE = 2000  # the demo dataset (benchmarks/demo.py)
TINY_COUNT = 2000
TINY_TARGET = 20_000  # samples/s
POOL_WORKERS = 2
POOL_CHUNKSIZE = 8
_ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that makes the stored pixels upright
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


# -- buckets, as datago builds and picks them (go/transform/bucket.go) ---------------------------
@functools.lru_cache(maxsize=8)
def build_buckets(
    size: int,
    ratio: int = DOWNSAMPLING_RATIO,
    min_ar: float = MIN_ASPECT_RATIO,
    max_ar: float = MAX_ASPECT_RATIO,
) -> tuple[tuple[int, int], ...]:
    """datago's buckets (W, H), sorted by aspect ratio.

    With p = size / ratio patches per side, each bucket is (pw * ratio, ph * ratio) with
    ph = p² // pw (landscape sweep over pw) or pw = p² // ph (portrait sweep over ph); buckets whose
    aspect ratio is outside [min_ar, max_ar] are dropped, duplicates kept once.
    """
    p = size // ratio
    area = p * p
    seen: set[tuple[int, int]] = set()
    out: list[tuple[int, int]] = []

    def add(pw: int, ph: int) -> None:
        if pw < 1 or ph < 1:
            return
        b = (pw * ratio, ph * ratio)
        if not min_ar <= b[0] / b[1] <= max_ar or b in seen:
            return
        seen.add(b)
        out.append(b)

    for pw in range(math.ceil(math.sqrt(area * min_ar)), math.floor(math.sqrt(area * max_ar)) + 1):
        add(pw, area // pw)
    for ph in range(math.ceil(math.sqrt(area / max_ar)), math.floor(math.sqrt(area / min_ar)) + 1):
        add(area // ph, ph)
    out.sort(key=lambda b: b[0] / b[1])
    return tuple(out)


@functools.lru_cache(maxsize=8)
def _bucket_ratios(size: int) -> tuple[float, ...]:
    return tuple(w / h for w, h in build_buckets(size))


def nearest_bucket(size: int, w: int, h: int) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest to w / h (ties go to the wider one), as datago."""
    buckets, ratios = build_buckets(size), _bucket_ratios(size)
    ar = w / h
    i = bisect.bisect_left(ratios, ar)
    if i == 0:
        return buckets[0]
    if i == len(buckets):
        return buckets[-1]
    if ar - ratios[i - 1] < ratios[i] - ar:
        return buckets[i - 1]
    return buckets[i]


# -- the Pillow loader (b, c) --------------------------------------------------------------------
def _round(x: float) -> int:
    """C's round(): halves away from zero."""
    return math.floor(x + 0.5)


def pil_load(path: str, size: int) -> np.ndarray:
    """Decode one image with Pillow into the RGB uint8 (H, W, 3) array of its bucket.

    Plain decode (no ``draft()``); the crop window is chosen as datago does (cover scale, centre
    crop, in stored pixels) and resized with Lanczos in one ``resize(box=...)``; the EXIF rotation
    is applied to the small result.
    """
    with Image.open(path) as im:
        orientation = im.getexif().get(_ORIENTATION_TAG, 1)
        if im.mode != "RGB":
            im = im.convert("RGB")
        sw, sh = im.size
        swap = orientation in (5, 6, 7, 8)
        bw, bh = nearest_bucket(size, sh, sw) if swap else nearest_bucket(size, sw, sh)
        tw, th = (bh, bw) if swap else (bw, bh)  # target in stored orientation
        scale = max(tw / sw, th / sh)
        cw = min(sw, max(1, _round(tw / scale)))
        ch = min(sh, max(1, _round(th / scale)))
        left, top = (sw - cw) // 2, (sh - ch) // 2
        out = im.resize((tw, th), Image.Resampling.LANCZOS, box=(left, top, left + cw, top + ch))
    if orientation in _UPRIGHT:
        out = out.transpose(_UPRIGHT[orientation])
    return np.asarray(out)


def _pil_task(task: tuple[str, int]) -> np.ndarray:
    return pil_load(*task)


def _noop(x: int) -> int:
    return x


# -- the run harness ----------------------------------------------------------------------------
@dataclass
class Result:
    """Best-of-R timing of one loader."""

    name: str
    count: int = 0
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # CPU seconds of the process tree, per run

    @property
    def best(self) -> float:
        """Shortest run, seconds."""
        return min(self.seconds) if self.seconds else math.inf

    @property
    def rate(self) -> float:
        """Images per second of the best run."""
        return self.count / self.best if self.seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        """Least CPU time per image over the runs, milliseconds (nan when not measured)."""
        return 1000 * min(self.cpu) / self.count if self.cpu and self.count else math.nan


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a live process, from /proc (0 when unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu() -> float:
    """CPU seconds of this process (all threads, so datago's Go workers too) and its children.

    On a shared machine wall-clock rates move with other jobs; CPU time per image moves much less.
    """
    own = time.process_time()
    return own + sum(_proc_cpu(p.pid) for p in multiprocessing.active_children() if p.pid)


def timed(fn: Callable[[], int]) -> tuple[int, float, float]:
    """(fn(), wall seconds, CPU seconds of the process tree)."""
    c0, t0 = tree_cpu(), time.perf_counter()
    n = fn()
    return n, time.perf_counter() - t0, tree_cpu() - c0


def list_images(root: Path) -> list[str]:
    """Image files below root, relative posix paths, sorted as datago sorts them (byte order)."""
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if Path(f).suffix.lower() in IMAGE_EXTENSIONS:
                out.append(Path(dirpath, f).relative_to(root).as_posix())
    out.sort(key=lambda s: s.encode())
    return out


def link_subset(root: Path, rel_paths: list[str], dest: Path) -> None:
    """Mirror rel_paths of root into dest as symlinks, so that datago lists exactly those files."""
    for rel in rel_paths:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to((root / rel).resolve())


def warm_cache(paths: list[Path]) -> int:
    """Read every file once (page cache); returns the bytes read."""
    total = 0
    for p in paths:
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                total += len(chunk)
    return total


def datago_config(root: Path, size: int | None, buffer: int = 64) -> dict[str, Any]:
    """Client config over a folder in sorted order; size=None keeps images as decoded."""
    image_config: dict[str, Any] = {}
    if size is not None:
        image_config = {
            "crop_and_resize": True,
            "default_image_size": size,
            "downsampling_ratio": DOWNSAMPLING_RATIO,
            "min_aspect_ratio": MIN_ASPECT_RATIO,
            "max_aspect_ratio": MAX_ASPECT_RATIO,
        }
    return {
        "source_type": "file",
        "source_config": {"root_path": str(root), "random_sampling": False},
        "image_config": image_config,
        "limit": 0,
        "samples_buffer_size": buffer,
    }


def run_datago(root: Path, size: int, stats_out: dict[str, Any]) -> int:
    """(a) Stream root through datago, touching each sample's array; returns the count."""
    n = 0
    with datago.DatagoClient(datago_config(root, size)) as client:
        for sample in client:
            arr = sample.image_array
            if arr is not None:
                n += 1
        stats_out.clear()
        stats_out.update(client.stats())
    return n


def run_pillow(paths: list[str], size: int) -> int:
    """(b) The single-process Pillow loop; returns the count."""
    n = 0
    for p in paths:
        arr = pil_load(p, size)
        n += arr.ndim == 3
    return n


class PoolLoader:
    """(c) DataLoader-style loader: persistent worker processes running :func:`pil_load`."""

    def __init__(self, workers: int = POOL_WORKERS) -> None:
        self.workers = workers
        self.kind = "multiprocessing.Pool"
        self._torch: Any = None
        try:
            import torch.utils.data as tud

            self._torch = tud
            self.kind = "torch DataLoader"
        except ImportError:
            # forkserver: the workers do not inherit the parent's threads (datago's Go runtime)
            ctx = multiprocessing.get_context("forkserver")
            self._pool = ctx.Pool(workers)
            self._pool.map(_noop, range(workers * 4))  # start and import before timing

    def run(self, paths: list[str], size: int) -> int:
        """Load every path in the workers, receive the arrays in this process; returns count."""
        n = 0
        for arr in self._iterate(paths, size):
            n += arr.ndim == 3
        return n

    def _iterate(self, paths: list[str], size: int) -> Iterator[np.ndarray]:
        tasks = [(p, size) for p in paths]
        if self._torch is not None:
            loader = self._torch.DataLoader(
                _TaskList(tasks),
                batch_size=None,
                num_workers=self.workers,
                prefetch_factor=POOL_CHUNKSIZE,
                multiprocessing_context="forkserver",
            )
            yield from (np.asarray(x) for x in loader)
        else:
            yield from self._pool.imap(_pil_task, tasks, chunksize=POOL_CHUNKSIZE)

    def close(self) -> None:
        """Stop the workers."""
        if self._torch is None:
            self._pool.close()
            self._pool.join()


class _TaskList:
    """A map-style dataset over (path, size) tasks (for torch's DataLoader)."""

    def __init__(self, tasks: list[tuple[str, int]]) -> None:
        self.tasks = tasks

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, i: int) -> np.ndarray:
        return _pil_task(self.tasks[i])


# -- (d) per-sample Python overhead -------------------------------------------------------------
def make_tiny(dest: Path, count: int = TINY_COUNT) -> None:
    """count 16x16 images (alternately PNG and JPEG) of random colours in dest."""
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
        ext = "png" if i % 2 else "jpg"
        Image.fromarray(pixels).save(dest / f"{i:05d}.{ext}")


def drain_tiny(root: Path, count: int, timeout: float = 120.0) -> tuple[int, float]:
    """Fill a client's queue with count tiny samples, then time draining it from Python.

    Returns:
        (samples drained, seconds) — only the draining (get_sample + id + image_array) is timed.
    """
    buffer = max(2048, count)
    with datago.DatagoClient(datago_config(root, None, buffer)) as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = client.stats()
            if st["queue_length"] >= count or st["samples_produced"] >= count:
                break
            time.sleep(0.01)
        n = 0
        t0 = time.perf_counter()
        while (sample := client.get_sample()) is not None:
            _ = sample.id
            _ = sample.image_array
            n += 1
        seconds = time.perf_counter() - t0
    return n, seconds


# -- correctness spot check (not timed) ----------------------------------------------------------
def compare(
    root: Path, src_root: Path, size: int, check: set[str], rotated: set[str]
) -> dict[str, Any]:
    """Compare datago with the Pillow loader: bucket agreement for every sample, and pixels.

    Returns:
        {"samples", "bucket_mismatches", "checked", "mad_mean", "mad_max", "worst",
        "rotated", "rotated_mad_max"} where mad is the mean absolute difference (0..255) between
        datago's and Pillow's arrays, over the ids in check (and, separately, in rotated): a wrong
        orientation would show as a difference of tens of levels.
    """
    mismatches, samples, mads = 0, 0, {}
    with datago.DatagoClient(datago_config(root, size)) as client:
        for sample in client:
            samples += 1
            arr = sample.image_array
            if arr is None:
                continue
            with Image.open(src_root / sample.id) as im:
                w, h = im.size
                if im.getexif().get(_ORIENTATION_TAG, 1) in (5, 6, 7, 8):
                    w, h = h, w
            if (arr.shape[1], arr.shape[0]) != nearest_bucket(size, w, h):
                mismatches += 1
            if sample.id in check:
                ref = pil_load(str(src_root / sample.id), size)
                if ref.shape != arr.shape:
                    mads[sample.id] = 255.0
                else:
                    diff = np.abs(ref.astype(np.int16) - arr.astype(np.int16))
                    mads[sample.id] = float(diff.mean())
    worst = max(mads, key=mads.__getitem__) if mads else ""
    return {
        "samples": samples,
        "bucket_mismatches": mismatches,
        "checked": len(mads),
        "mad_mean": float(np.mean(list(mads.values()))) if mads else 0.0,
        "mad_max": mads.get(worst, 0.0),
        "worst": worst,
        "rotated": len(rotated & mads.keys()),
        "rotated_mad_max": max((mads[k] for k in rotated & mads.keys()), default=0.0),
    }


def rotated_ids(root: Path, rel_paths: list[str]) -> set[str]:
    """The files with an EXIF orientation other than 1."""
    out = set()
    for rel in rel_paths:
        with Image.open(root / rel) as im:
            if im.getexif().get(_ORIENTATION_TAG, 1) != 1:
                out.add(rel)
    return out


# -- main ---------------------------------------------------------------------------------------
def print_stages(stats: dict[str, Any], wall: float) -> None:
    """datago's per-stage counters, with busy time per item and as a share of wall x workers."""
    print(f"  {'stage':<9}{'in':>7}{'out':>7}{'busy s':>9}{'ms/item':>9}")
    for st in stats.get("stages", []):
        per = 1000 * st["busy_seconds"] / st["items_out"] if st["items_out"] else 0.0
        counts = f"{st['name']:<9}{st['items_in']:>7}{st['items_out']:>7}"
        print(f"  {counts}{st['busy_seconds']:>9.2f}{per:>9.2f}")
    print(f"  wall {wall:.2f} s, bytes_read {stats.get('bytes_read', 0) / 1e6:.0f} MB")


def main(argv: list[str] | None = None) -> int:
    """Run the four measurements and print the summary table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("demo_data"), help="dataset folder")
    parser.add_argument("--n", type=int, default=1000, help="images to load (first n, sorted)")
    parser.add_argument("--size", type=int, default=512, help="bucket size (multiple of 16)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per loader (best counts)")
    args = parser.parse_args(argv)
    repeat = max(1, args.repeat)

    print(f"datago {datago.version()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    build_dataset(args.data, max(DATASET_SIZE, args.n))
    src_root = args.data.resolve()
    files = list_images(src_root)[: args.n]
    paths = [str(src_root / f) for f in files]
    nbytes = warm_cache([Path(p) for p in paths])
    print(f"{len(files)} images from {src_root} ({nbytes / 1e6:.0f} MB, page cache warmed)")
    print(f"{len(build_buckets(args.size))} buckets of {args.size} px, repeat {repeat}\n")

    pool = PoolLoader()
    results = {
        "datago": Result("datago (Go, default workers)"),
        "pillow": Result("pillow (1 process)"),
        "dataloader": Result(f"dataloader ({pool.kind}, {pool.workers} workers)"),
    }
    best_stats: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="datago-bench-") as tmp:
        subset = Path(tmp) / "subset"
        link_subset(src_root, files, subset)
        runs: dict[str, Callable[[], int]] = {
            "datago": lambda: run_datago(subset, args.size, stats),
            "pillow": lambda: run_pillow(paths, args.size),
            "dataloader": lambda: pool.run(paths, args.size),
        }
        try:
            for r in range(repeat):
                for key, fn in runs.items():
                    stats.clear()
                    n, seconds, cpu = timed(fn)
                    res = results[key]
                    res.count = n
                    if key == "datago" and (not res.seconds or seconds < res.best):
                        best_stats = dict(stats)
                    res.seconds.append(seconds)
                    res.cpu.append(cpu)
                    rate, cpu_ms = n / seconds, 1000 * cpu / max(1, n)
                    print(
                        f"  run {r + 1}/{repeat} {key:<11}{n:>5} images {seconds:7.2f} s "
                        f"{rate:7.1f} images/s  {cpu_ms:6.1f} CPU ms/image"
                    )
        finally:
            pool.close()

        print("\nchecking datago against the Pillow loader (not timed)")
        rotated = rotated_ids(src_root, files)
        cmp = compare(subset, src_root, args.size, set(files[:100]) | rotated, rotated)
        print(
            f"  {cmp['samples']} samples, bucket mismatches vs the Python bucket rules: "
            f"{cmp['bucket_mismatches']}\n  pixels, {cmp['checked']} images: mean |diff| "
            f"{cmp['mad_mean']:.2f}/255, worst {cmp['mad_max']:.2f} ({cmp['worst']}); "
            f"worst of the {cmp['rotated']} EXIF-rotated: {cmp['rotated_mad_max']:.2f}"
        )

        tiny = Path(tmp) / "tiny"
        tiny.mkdir()
        make_tiny(tiny)
        warm_cache(sorted(tiny.iterdir()))
        overhead = Result("python overhead (get_sample + id + image_array)")
        for _ in range(repeat):
            n, seconds = drain_tiny(tiny, TINY_COUNT)
            overhead.count = n
            overhead.seconds.append(seconds)

    print(f"\ndatago stages, best run ({results['datago'].best:.2f} s):")
    print_stages(best_stats, results["datago"].best)

    d = results["datago"].rate
    print(f"\nsummary: {len(files)} images, {args.size}-px buckets, best of {repeat}")
    print(f"  {'loader':<46}{'images/s':>10}{'best s':>9}{'datago x':>10}{'CPU ms/img':>12}")
    for res in results.values():
        ratio = d / res.rate if res.rate else math.inf
        print(f"  {res.name:<46}{res.rate:>10.1f}{res.best:>9.2f}{ratio:>9.2f}x{res.cpu_ms:>12.1f}")
    print(
        f"  datago/pillow = {d / results['pillow'].rate:.2f}x, "
        f"datago/dataloader = {d / results['dataloader'].rate:.2f}x"
    )
    verdict = "meets" if overhead.rate >= TINY_TARGET else "misses"
    print(
        f"  {overhead.name}: {overhead.rate:,.0f} samples/s over {overhead.count} samples "
        f"({1e6 / overhead.rate if overhead.rate else math.inf:.1f} µs/sample; "
        f"{verdict} the {TINY_TARGET:,}/s target)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
