"""Benchmark: map-style access (``DatagoClient.get_items``, random order, in batches) against the
streaming client, on the same photos with the same image settings.

(a) stream: a :class:`datago.DatagoClient` iterated to the end (its default workers, sorted order);
(b) map: the same config, ``get_items`` over a seeded random permutation of every index, ``--batch``
    indices per call (one parallel decode per call on ``num_threads`` workers) — what a
    DataLoader with a RandomSampler and ``batch_size`` does through ``__getitems__``;
(c) map-1: the same with one index per call (a sampler without batching).

The page cache is warmed first; each mode runs ``--repeat`` times and the best run counts. Run::

    python benchmarks/bench_map.py [--data ./demo_data] [--n 1000] [--size 512] [--batch 32] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import datago
from demo_data import build_dataset


def _config(root: Path, size: int) -> dict:
    return {
        "source_type": "file",
        "source_config": {"root_path": str(root)},
        "image_config": {"crop_and_resize": True, "default_image_size": size, "downsampling_ratio": 16},
    }


def stream(cfg: dict) -> int:
    with datago.DatagoClient(cfg) as client:
        return sum(1 for _ in client)


def map_style(cfg: dict, batch: int, seed: int = 0) -> int:
    client = datago.DatagoClient(cfg)
    try:
        order = list(range(client.num_items()))
        random.Random(seed).shuffle(order)
        n = 0
        for lo in range(0, len(order), batch):
            n += sum(s is not None for s in client.get_items(order[lo : lo + batch]))
        return n
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("demo_data"), help="photo folder (built if missing)")
    parser.add_argument("--n", type=int, default=1000, help="images (the first n of the folder's sorted listing)")
    parser.add_argument("--size", type=int, default=512, help="bucket size (default_image_size)")
    parser.add_argument("--batch", type=int, default=32, help="indices per get_items call")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if not args.data.exists() or not any(args.data.iterdir()):
        build_dataset(args.data, n=max(args.n, 2000))
    files = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: args.n]
    subset = Path(f"/tmp/datago_bench_map_{args.n}")
    if not subset.exists():
        subset.mkdir(parents=True)
        for i, p in enumerate(files):
            (subset / f"{i:06d}{p.suffix.lower()}").symlink_to(p.resolve())
    for p in files:  # warm the page cache
        p.read_bytes()
    cfg = _config(subset, args.size)
    modes = {
        "stream": lambda: stream(cfg),
        "map": lambda: map_style(cfg, args.batch),
        "map-1": lambda: map_style(cfg, 1),
    }
    print(f"{len(files)} photos from {args.data}, buckets of {args.size}, get_items batches of {args.batch}")
    for name, fn in modes.items():
        best = 0.0
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            n = fn()
            best = max(best, n / (time.perf_counter() - t0))
        print(f"{name:8s} {best:8.1f} images/s  ({n} images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
