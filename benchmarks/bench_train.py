"""Benchmark: images/s into a training batch, three ways, on the same real photos.

Every loader turns the same files (the first ``--n`` of the demo dataset) into batches of
``--batch-size`` images as a ``(N, C, H, W)`` ``uint8`` tensor (or array), the input of a training
step:

(a) datago.torch: ``DatagoIterableDataset`` with ``batch_size`` and ``image_layout`` "CHW" over the
    folder, through ``DataLoader(ds, batch_size=None, num_workers=0)``; images go to the
    aspect-ratio bucket of ``--size`` px (cover resize + centre crop in the Go core), and every batch
    holds one bucket;
(b) a torch DataLoader with 2 worker processes (forkserver, persistent) over a map-style dataset:
    PIL decode, bilinear resize of the short side to ``--size``, centre crop to ``size`` x ``size``,
    ``torch.from_numpy(np.asarray(img)).permute(2, 0, 1)``, default collate;
(c) Photoroom's Rust datago (PyPI ``datago``), run in its own venv (``--anchor-python``, by default
    ``/opt/datago-anchor/bin/python``) through a subprocess with the same ``image_config``, and the
    collation a user writes: ``np.asarray(sample.image)`` per sample, grouped by size into batches,
    ``np.stack`` then transposed to a contiguous NCHW array.

The loaders run alternately, ``--repeat`` times each; the best and the median run are shown, and
the CPU time per image (process tree), which moves less than wall time on a shared machine. Each
run includes the loader's start (listing, threads); (b) starts its workers in its first run and
keeps them. The subprocess of (c) times itself (from client creation to the last batch). Usage::

    python benchmarks/bench_train.py [--data demo_data] [--n 1000] [--size 256] [--batch-size 32] [--repeat 3]

Setting up (c): ``python3 -m venv /opt/datago-anchor && /opt/datago-anchor/bin/pip install
datago==2026.10.1 numpy pillow``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_loaders import Result, link_subset, list_images, timed, warm_cache
from PIL import Image
from torch.utils.data import DataLoader, Dataset

import datago
from datago.torch import DatagoIterableDataset
from demo_data import build_dataset

DOWNSAMPLING_RATIO = 16
MIN_ASPECT_RATIO, MAX_ASPECT_RATIO = 0.5, 2.0
DATASET_SIZE = 2000  # the demo dataset (benchmarks/demo.py)
ANCHOR_PYTHON = "/opt/datago-anchor/bin/python"

# (c): runs in the anchor's venv; argv[1] is a JSON {"config": ..., "batch_size": ...}. Prints a
# JSON line {"images", "batches", "seconds", "cpu_seconds", "shapes_ok"}.
ANCHOR_SCRIPT = r"""
import json, resource, sys, time
import numpy as np
import datago

args = json.loads(sys.argv[1])
bs = args["batch_size"]

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

c0, t0 = cpu(), time.perf_counter()
client = datago.DatagoClient(json.dumps(args["config"]))
client.start()
groups, images, batches, shapes_ok = {}, 0, 0, True

def emit(arrays):
    global images, batches, shapes_ok
    batch = np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2))  # (N, C, H, W) uint8
    shapes_ok = shapes_ok and batch.dtype == np.uint8 and batch.shape[1] == 3
    images += batch.shape[0]
    batches += 1

while (sample := client.get_sample()) is not None:
    a = np.asarray(sample.image)
    group = groups.setdefault(a.shape, [])
    group.append(a)
    if len(group) == bs:
        emit(group)
        groups[a.shape] = []
for group in groups.values():
    if group:
        emit(group)
client.stop()
seconds, cpu_seconds = time.perf_counter() - t0, cpu() - c0
print(json.dumps({"images": images, "batches": batches, "seconds": seconds, "cpu_seconds": cpu_seconds,
                  "shapes_ok": shapes_ok}))
"""


def image_config(size: int) -> dict[str, Any]:
    """The bucketing both datagos use: ``size``² pixels, sides multiple of 16, aspect 0.5..2."""
    return {
        "crop_and_resize": True,
        "default_image_size": size,
        "downsampling_ratio": DOWNSAMPLING_RATIO,
        "min_aspect_ratio": MIN_ASPECT_RATIO,
        "max_aspect_ratio": MAX_ASPECT_RATIO,
    }


# -- (a) datago.torch ---------------------------------------------------------------------------
def run_datago_torch(root: Path, size: int, batch_size: int, stats: dict[str, int]) -> int:
    """Stream root as NCHW batches through datago.torch; returns the number of images."""
    config = {
        "source_type": "file",
        "source_config": {"root_path": str(root), "random_sampling": False},
        "image_config": image_config(size),
        "batch_size": batch_size,
        "image_layout": "CHW",
        "samples_buffer_size": 64,
    }
    ds = DatagoIterableDataset(config, fields=("id",), rank=0, world_size=1)
    n = batches = 0
    for batch in DataLoader(ds, batch_size=None, num_workers=0):
        images = batch["images"]
        assert images.dtype == torch.uint8 and images.ndim == 4 and images.shape[1] == 3
        n += images.shape[0]
        batches += 1
    stats["batches"] = batches
    return n


# -- (b) DataLoader + PIL ------------------------------------------------------------------------
class PilCropDataset(Dataset):
    """Map-style dataset: PIL decode, bilinear resize of the short side to ``size``, centre crop,
    (3, size, size) uint8 tensor."""

    def __init__(self, paths: list[str], size: int) -> None:
        self.paths = paths
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        s = self.size
        with Image.open(self.paths[i]) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = s / min(w, h)
            rw, rh = max(s, round(w * scale)), max(s, round(h * scale))
            im = im.resize((rw, rh), Image.Resampling.BILINEAR)
            left, top = (rw - s) // 2, (rh - s) // 2
            im = im.crop((left, top, left + s, top + s))
            return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)


class PilLoader:
    """(b): a DataLoader with persistent worker processes over :class:`PilCropDataset`."""

    def __init__(self, paths: list[str], size: int, batch_size: int, workers: int = 2) -> None:
        self.loader = DataLoader(
            PilCropDataset(paths, size),
            batch_size=batch_size,
            num_workers=workers,
            persistent_workers=True,
            multiprocessing_context="forkserver",  # the parent runs datago's Go runtime
        )

    def run(self, stats: dict[str, int]) -> int:
        n = batches = 0
        for images in self.loader:
            assert images.dtype == torch.uint8 and images.ndim == 4 and images.shape[1] == 3
            n += images.shape[0]
            batches += 1
        stats["batches"] = batches
        return n


# -- (c) Photoroom's datago ------------------------------------------------------------------------
def run_anchor(python: str, root: Path, size: int, batch_size: int, count: int) -> dict[str, Any]:
    """Run Photoroom's datago in its venv; returns its JSON report.

    Raises:
        RuntimeError: the subprocess failed (its stderr is in the message).
    """
    config = {
        "source_type": "file",
        "source_config": {"root_path": str(root), "random_sampling": False},
        "image_config": image_config(size),
        "limit": count,  # Photoroom's datago reads limit 0 as zero samples
        "samples_buffer_size": 64,
    }
    args = json.dumps({"config": config, "batch_size": batch_size})
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run([python, "-c", ANCHOR_SCRIPT, args], capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"Photoroom's datago failed ({python}):\n{proc.stderr[-2000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if not report["shapes_ok"]:
        raise RuntimeError("Photoroom's datago gave batches that are not (N, 3, H, W) uint8")
    return report


def median_rate(res: Result) -> float:
    """Images per second of the median run (robust to a quiet or busy moment of a shared machine)."""
    return res.count / statistics.median(res.seconds) if res.seconds else 0.0


def main(argv: list[str] | None = None) -> int:
    """Run the three loaders alternately and print images/s and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("demo_data"), help="dataset folder")
    parser.add_argument("--n", type=int, default=1000, help="images to load (first n, sorted)")
    parser.add_argument("--size", type=int, default=256, help="bucket / crop size in px (multiple of 16)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch")
    parser.add_argument("--repeat", type=int, default=3, help="runs per loader (best counts)")
    parser.add_argument("--anchor-python", default=ANCHOR_PYTHON, help="python of the venv with Photoroom's datago")
    parser.add_argument("--skip-anchor", action="store_true", help="do not run (c)")
    args = parser.parse_args(argv)
    repeat = max(1, args.repeat)
    run_c = not args.skip_anchor
    if run_c and not Path(args.anchor_python).exists():
        print(f"{args.anchor_python} not found: (c) skipped (see the module docstring to set it up)")
        run_c = False

    print(
        f"datago {datago.version()}, torch {torch.__version__}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"
    )
    build_dataset(args.data, max(DATASET_SIZE, args.n))
    src_root = args.data.resolve()
    files = list_images(src_root)[: args.n]
    paths = [str(src_root / f) for f in files]
    nbytes = warm_cache([Path(p) for p in paths])
    print(f"{len(files)} images from {src_root} ({nbytes / 1e6:.0f} MB, page cache warmed)")
    print(f"batches of {args.batch_size}, {args.size}-px buckets / crops, repeat {repeat}\n")

    results = {
        "datago.torch": Result("(a) datago.torch, DataLoader num_workers=0"),
        "dataloader": Result("(b) DataLoader, 2 workers, PIL + collate"),
    }
    if run_c:
        results["photoroom"] = Result("(c) Photoroom datago + numpy collation")
    batches: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="datago-bench-train-") as tmp:
        subset = Path(tmp) / "subset"
        link_subset(src_root, files, subset)
        pil = PilLoader(paths, args.size, args.batch_size)
        stats: dict[str, int] = {}
        runs: dict[str, Callable[[], int]] = {
            "datago.torch": lambda: run_datago_torch(subset, args.size, args.batch_size, stats),
            "dataloader": lambda: pil.run(stats),
        }
        for r in range(repeat):
            for key in results:
                stats.clear()
                if key == "photoroom":
                    rep = run_anchor(args.anchor_python, subset, args.size, args.batch_size, len(files))
                    n, seconds, cpu = rep["images"], rep["seconds"], rep["cpu_seconds"]
                    stats["batches"] = rep["batches"]
                else:
                    n, seconds, cpu = timed(runs[key])
                res = results[key]
                res.count = n
                res.seconds.append(seconds)
                res.cpu.append(cpu)
                batches[key] = stats.get("batches", 0)
                print(
                    f"  run {r + 1}/{repeat} {key:<13}{n:>5} images {batches[key]:>4} batches {seconds:7.2f} s "
                    f"{n / seconds:7.1f} images/s  {1000 * cpu / max(1, n):6.1f} CPU ms/image"
                )

    a, a_med, a_cpu = results["datago.torch"].rate, median_rate(results["datago.torch"]), results["datago.torch"].cpu_ms
    print(f"\nsummary: {len(files)} images, batches of {args.batch_size}, {args.size} px, best and median of {repeat}")
    print(f"  {'loader':<46}{'images/s':>10}{'median':>8}{'best s':>9}{'(a) x':>8}{'CPU ms/img':>12}{'(a) x':>7}")
    for res in results.values():
        ratio = a / res.rate if res.rate else math.inf
        cpu_ratio = res.cpu_ms / a_cpu if a_cpu else math.nan
        print(
            f"  {res.name:<46}{res.rate:>10.1f}{median_rate(res):>8.1f}{res.best:>9.2f}{ratio:>7.2f}x"
            f"{res.cpu_ms:>12.1f}{cpu_ratio:>6.2f}x"
        )
    for key, label, aim in (("dataloader", "(b)", 3.0), ("photoroom", "(c)", 1.5)):
        if key in results:
            res = results[key]
            print(
                f"  (a)/{label}: best {a / res.rate:.2f}x, median {a_med / median_rate(res):.2f}x, "
                f"CPU per image {res.cpu_ms / a_cpu:.2f}x (aim >= {aim})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
