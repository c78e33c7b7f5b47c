"""Benchmark: datago against Photoroom's datago (the anchor), side by side, in one run.

Every loader reads the same photos (the first ``--n`` files of the web-like demo dataset of
``demo_data.py``, hard-linked into one folder) and turns them into ``--size``-px aspect-ratio
buckets (``crop_and_resize``, ``image_to_rgb8``, the same ``image_config`` for both datagos). The
measurements run alternately, ``--rounds`` times each; the median per loader counts:

(a) per sample, one numpy array per sample: ours (``DatagoClient``, ``sample.image_array``)
    against Photoroom's (``client.get_sample()``, ``np.asarray(sample.image)``);
(b) batches of ``--batch-size`` as a ``(N, C, H, W)`` uint8 tensor, one bucket per batch: ours
    through ``datago.torch.DatagoIterableDataset`` (``batch_size``, ``image_layout`` "CHW") and a
    ``DataLoader(batch_size=None)``; Photoroom's samples grouped by bucket in Python, ``np.stack``
    and a transpose to a contiguous NCHW array (``torch.from_numpy`` of it is free; torch is not
    installed in its venv);
(c) a torch ``DataLoader`` with 2 persistent worker processes and PIL: decode, crop + Lanczos
    resize to the same bucket, ``torch.from_numpy(...).permute(2, 0, 1)`` per sample;
(d) the libjpeg-turbo full-size decode limit: ``jpeg_limit.c`` (compiled here against
    libjpeg-dev) decodes every JPEG of the set at full size to RGB with ``--threads`` threads,
    files in memory. Our share of it, JPEG part: ours per sample on the JPEGs only (a folder of
    the same JPEGs, the PNGs left out) over the limit. The whole-mix line divides our rate on
    all files (PNGs included, decoded by us) by the same JPEG-only limit;
(e) the db source against the folder source: the same photos registered in an engine
    datasource (SQLite in a temp folder) and read with ``as_ml_dataset()`` (the embedded server
    serves the pages; the core reads the files from disk), over (a)'s folder rate.

Photoroom's datago runs in its own venv (``--anchor-venv``, default ``.venv-anchor`` in the
repository or ``$DATAGO_ANCHOR_VENV``; created with ``datago==2026.10.1 numpy pillow`` when
missing: both packages import as ``datago``); each of its runs is a subprocess that times itself
from client creation to the last sample. By default the process (and its children) is pinned to
``--cpus 2`` CPUs, the reference 2-core machine. Run by ``./build.sh bench``::

    python benchmarks/bench_anchor.py [--data demo_data] [--n 1000] [--size 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_loaders import list_images, pil_load, tree_cpu, warm_cache

from demo_data import DEFAULT_STYLE, STYLES, build_dataset, format_stats, read_marker

ROOT = Path(__file__).resolve().parent.parent
ANCHOR_REQUIREMENT = "datago==2026.10.1"
ANCHOR_VENV = Path(os.environ.get("DATAGO_ANCHOR_VENV", ROOT / ".venv-anchor"))
DATASET_SIZE = 2000  # the demo dataset (benchmarks/demo.py)
DOWNSAMPLING_RATIO = 16
MIN_ASPECT_RATIO, MAX_ASPECT_RATIO = 0.5, 2.0
DATALOADER_WORKERS = 2
BUFFER = 64  # samples_buffer_size of both datagos

# Runs in the anchor's venv. argv[1]: JSON {"config", "mode": "sample" | "batch", "batch_size"}.
# Prints one JSON line {"images", "seconds", "cpu_seconds", "ok", "shapes": {"HxW": count}}.
ANCHOR_SCRIPT = r"""
import json, resource, sys, time
import numpy as np
import datago

args = json.loads(sys.argv[1])
mode, bs = args["mode"], args["batch_size"]

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

shapes, groups = {}, {}
images, ok = 0, True
c0, t0 = cpu(), time.perf_counter()
client = datago.DatagoClient(json.dumps(args["config"]))
client.start()

def emit(arrays):
    global images, ok
    batch = np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2))  # (N, C, H, W) uint8
    ok = ok and batch.dtype == np.uint8 and batch.shape[1] == 3
    images += batch.shape[0]

while (sample := client.get_sample()) is not None:
    a = np.asarray(sample.image)
    key = f"{a.shape[0]}x{a.shape[1]}"
    shapes[key] = shapes.get(key, 0) + 1
    if mode == "sample":
        ok = ok and a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
        images += 1
        continue
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
print(json.dumps({"images": images, "seconds": seconds, "cpu_seconds": cpu_seconds, "ok": ok, "shapes": shapes}))
"""


def image_config(size: int) -> dict[str, Any]:
    """The ``image_config`` both datagos get: ``size``² buckets, sides multiple of 16, aspect
    0.5..2, always RGB8."""
    return {
        "crop_and_resize": True,
        "default_image_size": size,
        "downsampling_ratio": DOWNSAMPLING_RATIO,
        "min_aspect_ratio": MIN_ASPECT_RATIO,
        "max_aspect_ratio": MAX_ASPECT_RATIO,
        "image_to_rgb8": True,
    }


def folder_config(root: Path, size: int, limit: int) -> dict[str, Any]:
    """A folder in sorted order; ``limit`` samples (Photoroom's datago reads 0 as none)."""
    return {
        "source_type": "file",
        "source_config": {"root_path": str(root), "random_sampling": False},
        "image_config": image_config(size),
        "limit": limit,
        "samples_buffer_size": BUFFER,
    }


# -- setup --------------------------------------------------------------------------------------
def pin_cpus(count: int) -> list[int]:
    """Pin this process (and the children it starts) to its first ``count`` usable CPUs
    (0: leave it); returns the CPUs in use. Done before libdatago loads, so that Go sees them."""
    cpus = sorted(os.sched_getaffinity(0))
    if count > 0 and count < len(cpus):
        cpus = cpus[:count]
        os.sched_setaffinity(0, cpus)
    return cpus


def anchor_python(venv: Path) -> Path:
    """The venv's python with Photoroom's datago, created / installed when missing.

    Raises:
        RuntimeError: the venv cannot be made or the package not installed.
    """
    python = venv / "bin" / "python"
    want = ANCHOR_REQUIREMENT.split("==")[1]
    probe = "import importlib.metadata as m, numpy, PIL, datago; print(m.version('datago'))"
    env = anchor_env()
    if python.exists():
        got = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, env=env)
        if got.returncode == 0 and got.stdout.strip() == want:
            return python
    print(f"installing Photoroom's {ANCHOR_REQUIREMENT} into {venv} ...", flush=True)
    steps = [[sys.executable, "-m", "venv", str(venv)]] if not python.exists() else []
    steps.append(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            ANCHOR_REQUIREMENT,
            "numpy",
            "pillow",
        ]
    )
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    got = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, env=env)
    if got.returncode != 0 or got.stdout.strip() != want:
        raise RuntimeError(f"Photoroom's datago does not import from {python}:\n{got.stderr[-2000:]}")
    return python


def anchor_env() -> dict[str, str]:
    """The environment of the anchor's processes: no PYTHONPATH (it would import our datago)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def build_limit(dest: Path) -> Path:
    """Compile jpeg_limit.c against libjpeg(-turbo) into dest.

    Raises:
        RuntimeError: no C compiler or no libjpeg headers (``apt-get install gcc libjpeg-dev``).
    """
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler for benchmarks/jpeg_limit.c (apt-get install gcc)")
    out = dest / "jpeg_limit"
    src = Path(__file__).with_name("jpeg_limit.c")
    proc = subprocess.run([cc, "-O2", "-o", str(out), str(src), "-ljpeg", "-lpthread"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"compiling {src} failed (apt-get install libjpeg-dev):\n{proc.stderr[-2000:]}")
    return out


def link_files(src_root: Path, rel_paths: list[str], dest: Path) -> None:
    """Hard-link (else copy) rel_paths of src_root into dest, keeping the relative paths: real
    files, so that every loader and the engine's server (which refuses symlinks leading out of a
    root) read the same bytes."""
    for rel in rel_paths:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src_root / rel, target)
        except OSError:
            shutil.copyfile(src_root / rel, target)


def file_stats(root: Path, rel_paths: list[str]) -> str:
    """One line on the files: count, mean MPix, JPEG / PNG counts, MB."""
    from PIL import Image

    mpix, kinds, nbytes = [], collections.Counter(), 0
    for rel in rel_paths:
        with Image.open(root / rel) as im:
            mpix.append(im.size[0] * im.size[1] / 1e6)
            kinds[im.format] += 1
        nbytes += (root / rel).stat().st_size
    formats = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    return f"{len(rel_paths)} files ({formats}), {statistics.mean(mpix):.2f} MPix mean, {nbytes / 1e6:.0f} MB"


# -- the loaders ------------------------------------------------------------------------------
class Runs:
    """Timed runs per loader: images, wall and CPU seconds; medians and ratios."""

    def __init__(self) -> None:
        self.images: dict[str, int] = {}
        self.seconds: dict[str, list[float]] = collections.defaultdict(list)
        self.cpu: dict[str, list[float]] = collections.defaultdict(list)

    def add(self, key: str, images: int, seconds: float, cpu: float) -> None:
        self.images[key] = images
        self.seconds[key].append(seconds)
        self.cpu[key].append(cpu)

    def cpu_ms(self, key: str) -> float:
        """Median CPU milliseconds per image (all threads and worker processes of the loader)."""
        c = self.cpu.get(key)
        return 1000 * statistics.median(c) / self.images[key] if c and self.images[key] else float("nan")

    def rate(self, key: str) -> float:
        """Images per second of the median run (0 when the loader did not run)."""
        s = self.seconds.get(key)
        return self.images[key] / statistics.median(s) if s else 0.0

    def ratio(self, a: str, b: str) -> float:
        rb = self.rate(b)
        return self.rate(a) / rb if rb else float("nan")


def timed(fn: Callable[[], int]) -> tuple[int, float, float]:
    """(fn(), wall seconds, CPU seconds of this process and its worker processes)."""
    c0, t0 = tree_cpu(), time.perf_counter()
    n = fn()
    return n, time.perf_counter() - t0, tree_cpu() - c0


def ours_samples(config: dict[str, Any], shapes: dict[str, int] | None = None) -> int:
    """(a) ours: one numpy array per sample; counts the arrays' "HxW" in shapes."""
    import datago

    n = 0
    with datago.DatagoClient(config) as client:
        for sample in client:
            arr = sample.image_array
            if arr is not None and arr.ndim == 3 and arr.shape[2] == 3:
                n += 1
                if shapes is not None:
                    key = f"{arr.shape[0]}x{arr.shape[1]}"
                    shapes[key] = shapes.get(key, 0) + 1
    return n


def ours_batches(root: Path, size: int, batch_size: int) -> int:
    """(b) ours: NCHW uint8 batches through datago.torch and a DataLoader."""
    import torch
    from torch.utils.data import DataLoader

    from datago.torch import DatagoIterableDataset

    config = {**folder_config(root, size, 0), "batch_size": batch_size, "image_layout": "CHW"}
    ds = DatagoIterableDataset(config, fields=("id",), rank=0, world_size=1)
    n = 0
    for batch in DataLoader(ds, batch_size=None, num_workers=0):
        images = batch["images"]
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise RuntimeError(f"datago.torch gave a batch {tuple(images.shape)} {images.dtype}")
        n += images.shape[0]
    return n


class _PilTensors:
    """(c) a map-style dataset: PIL decode, crop + Lanczos resize to the bucket (as
    bench_loaders.pil_load, the crop rule of datago), a (3, H, W) uint8 tensor."""

    def __init__(self, paths: list[str], size: int) -> None:
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        import torch

        return torch.from_numpy(pil_load(self.paths[i], self.size).copy()).permute(2, 0, 1)


class PilDataLoader:
    """(c): ``torch.utils.data.DataLoader`` with persistent worker processes (forkserver: the
    parent runs datago's Go runtime), one tensor per sample."""

    def __init__(self, paths: list[str], size: int, workers: int = DATALOADER_WORKERS) -> None:
        from torch.utils.data import DataLoader

        self.loader = DataLoader(
            _PilTensors(paths, size),  # type: ignore[arg-type]
            batch_size=None,
            num_workers=workers,
            persistent_workers=True,
            prefetch_factor=8,
            multiprocessing_context="forkserver",
        )

    def start(self) -> None:
        """Start the workers (and their imports) before timing: take one item, drop the rest."""
        for _ in self.loader:
            break

    def run(self) -> int:
        return sum(t.ndim == 3 and t.shape[0] == 3 for t in self.loader)


def anchor_run(python: Path, config: dict[str, Any], mode: str, batch_size: int) -> dict[str, Any]:
    """One run of Photoroom's datago in its venv; returns its report.

    Raises:
        RuntimeError: the subprocess failed or gave arrays that are not uint8 RGB.
    """
    args = json.dumps({"config": config, "mode": mode, "batch_size": batch_size})
    proc = subprocess.run(
        [str(python), "-c", ANCHOR_SCRIPT, args], capture_output=True, text=True, env=anchor_env(), timeout=1800
    )
    if proc.returncode != 0:
        raise RuntimeError(f"Photoroom's datago failed:\n{proc.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if not report["ok"]:
        raise RuntimeError(f"Photoroom's datago ({mode}) gave arrays that are not uint8 RGB")
    return report


def limit_run(binary: Path, paths: list[str], threads: int) -> dict[str, Any]:
    """(d) one run of jpeg_limit on paths; returns its report.

    Raises:
        RuntimeError: a JPEG did not decode.
    """
    proc = subprocess.run([str(binary), str(threads)], input="\n".join(paths) + "\n", capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"jpeg_limit failed ({proc.returncode}): {proc.stdout}{proc.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


class DbSource:
    """(e) the photos as an engine datasource (SQLite in a temp folder, scanned before timing)."""

    def __init__(self, root: Path, work: Path) -> None:
        from datago.engine import datasources
        from datago.engine.db import Engine

        self.engine = Engine(work / "engine.sqlite")
        self.ds = datasources.get_or_create("bench", root, db_url=self.engine, progress=False)
        self.engine.background_server()  # started before timing, as a long-lived process has it
        self.run(64, limit=1)  # the first query's one-time costs (SQL compilation, the route), untimed

    def run(self, size: int, limit: int = 0) -> int:
        n = 0
        config = {"image_config": image_config(size), "samples_buffer_size": BUFFER, "limit": limit}
        with self.ds.all().as_ml_dataset(config) as client:
            for sample in client:
                arr = sample.image_array
                n += arr is not None and arr.ndim == 3
        return n

    def close(self) -> None:
        self.engine.dispose()


# -- main ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Run the loaders alternately and print the medians and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "demo_data", help="dataset folder (built if missing)")
    parser.add_argument("--style", choices=STYLES, default=DEFAULT_STYLE, help="demo dataset style (default web)")
    parser.add_argument(
        "--build", type=int, default=DATASET_SIZE, help="images the dataset holds (>= --n; default 2000)"
    )
    parser.add_argument("--n", type=int, default=1000, help="images to load (the first n, sorted)")
    parser.add_argument("--size", type=int, default=512, help="bucket size in px (multiple of 16)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch in (b)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median counts)")
    parser.add_argument("--cpus", type=int, default=2, help="pin to this many CPUs (0: all); default 2")
    parser.add_argument("--threads", type=int, default=0, help="threads of the decode limit (default: the CPUs)")
    parser.add_argument("--json", type=Path, help="also write the runs, medians and ratios to this JSON file")
    parser.add_argument("--anchor-venv", type=Path, default=ANCHOR_VENV, help="venv of Photoroom's datago")
    parser.add_argument(
        "--skip", default="", help="comma-separated parts to leave out: anchor, batch, dataloader, limit, db"
    )
    args = parser.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - {"anchor", "batch", "dataloader", "limit", "db"}
    if unknown:
        parser.error(f"--skip: unknown parts {sorted(unknown)}")
    rounds = max(1, args.rounds)
    cpus = pin_cpus(args.cpus)
    threads = args.threads or len(cpus)

    import datago  # after pinning: the Go runtime sizes itself on the CPUs it may use

    started = time.perf_counter()
    started_at = f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
    command = " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
    print(
        f"datago {datago.version()} vs Photoroom's {ANCHOR_REQUIREMENT}; {started_at}, "
        f"CPUs {cpus} of {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}, Python {sys.version.split()[0]}"
    )
    print(f"command: {command}")
    python = None if "anchor" in skip else anchor_python(args.anchor_venv)
    build_dataset(args.data, max(args.build, args.n), style=args.style)
    marker = read_marker(args.data)
    if "stats" in marker:
        print(f"dataset {args.data} ({args.style}): {format_stats(marker['stats'])}")
    src_root = args.data.resolve()
    files = list_images(src_root)[: args.n]
    jpegs = [f for f in files if Path(f).suffix.lower() in (".jpg", ".jpeg")]

    runs = Runs()
    reports: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="datago-bench-anchor-") as tmp_name:
        tmp = Path(tmp_name)
        photos, jpeg_dir = tmp / "photos", tmp / "jpegs"
        link_files(src_root, files, photos)
        link_files(src_root, jpegs, jpeg_dir)
        nbytes = warm_cache([photos / f for f in files])
        print(f"loaded set: {file_stats(photos, files)} (page cache warmed, {nbytes / 1e6:.0f} MB)")
        print(f"{args.size}-px buckets, batches of {args.batch_size}, {rounds} alternating rounds\n")
        paths = [str(photos / f) for f in files]
        limit_bin = None if "limit" in skip else build_limit(tmp)
        if "batch" not in skip or "dataloader" not in skip:
            import torch  # noqa: F401  (imported before timing)

            import datago.torch
        dataloader = None if "dataloader" in skip else PilDataLoader(paths, args.size)
        if dataloader is not None:
            dataloader.start()
        db = None if "db" in skip else DbSource(photos, tmp)
        n = len(files)
        ours_cfg = folder_config(photos, args.size, 0)
        anchor_cfg = folder_config(photos, args.size, n)

        def anchor(mode: str) -> Callable[[], tuple[int, float, float]]:
            def run() -> tuple[int, float, float]:
                assert python is not None
                rep = anchor_run(python, anchor_cfg, mode, args.batch_size)
                reports[f"anchor {mode}"] = rep
                return rep["images"], rep["seconds"], rep["cpu_seconds"]

            return run

        def limit() -> tuple[int, float, float]:
            assert limit_bin is not None
            rep = limit_run(limit_bin, [str(jpeg_dir / f) for f in jpegs], threads)
            return rep["images"], rep["seconds"], rep["cpu_seconds"]

        # (key, run) pairs in the order of a round; ours and the anchor swap places every round
        ours_shapes: dict[str, int] = {}

        def ours() -> tuple[int, float, float]:
            ours_shapes.clear()
            return timed(lambda: ours_samples(ours_cfg, ours_shapes))

        pairs: list[list[tuple[str, Callable[[], tuple[int, float, float]]]]] = [[("ours per sample", ours)]]
        if python is not None:
            pairs[0].append(("anchor per sample", anchor("sample")))
        if "batch" not in skip:
            pairs.append([("ours batches", lambda: timed(lambda: ours_batches(photos, args.size, args.batch_size)))])
            if python is not None:
                pairs[-1].append(("anchor batches", anchor("batch")))
        if dataloader is not None:
            pairs.append([("dataloader + PIL", lambda: timed(dataloader.run))])
        if limit_bin is not None:
            pairs.append(
                [
                    ("limit (JPEG part)", limit),
                    ("ours on the JPEGs", lambda: timed(lambda: ours_samples(folder_config(jpeg_dir, args.size, 0)))),
                ]
            )
        if db is not None:
            pairs.append([("ours db source", lambda: timed(lambda: db.run(args.size)))])
        try:
            for r in range(rounds):
                for group in pairs:
                    for key, fn in group if r % 2 == 0 else reversed(group):
                        images, seconds, cpu = fn()
                        runs.add(key, images, seconds, cpu)
                        print(
                            f"  round {r + 1}/{rounds} {key:<20}{images:>6} images {seconds:7.2f} s "
                            f"{images / seconds:8.1f} images/s {1000 * cpu / max(1, images):6.1f} CPU ms/image"
                        )
        finally:
            if db is not None:
                db.close()

    ratios = print_summary(runs, args, n, len(jpegs), reports, ours_shapes, time.perf_counter() - started)
    if args.json:
        loaders = {
            k: {"images": runs.images[k], "seconds": runs.seconds[k], "cpu_seconds": runs.cpu[k], "rate": runs.rate(k)}
            for k in runs.seconds
        }
        record = {"command": command, "date": started_at, "cpus": cpus, "loaders": loaders, "ratios": ratios}
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    return 0


def print_summary(
    runs: Runs,
    args: argparse.Namespace,
    n: int,
    n_jpegs: int,
    reports: dict[str, dict[str, Any]],
    ours_shapes: dict[str, int],
    elapsed: float,
) -> dict[str, float]:
    """Print the medians, the ratios against the aims, and the limit share; returns the ratios."""
    out: dict[str, float] = {}
    print(f"\nsummary: {n} photos ({n_jpegs} JPEGs), {args.size}-px buckets, median of {max(1, args.rounds)} rounds")
    print(f"  {'loader':<22}{'images/s':>10}{'CPU ms/img':>12}   runs (s)")
    for key in runs.seconds:
        secs = " ".join(f"{s:.2f}" for s in runs.seconds[key])
        print(f"  {key:<22}{runs.rate(key):>10.1f}{runs.cpu_ms(key):>12.1f}   {secs}")
    print("ratios (ours / other, medians):")
    lines = [
        ("ours per sample", "anchor per sample", "per sample vs Photoroom's datago"),
        ("ours batches", "anchor batches", f"batches of {args.batch_size} (NCHW) vs Photoroom's datago"),
        ("ours per sample", "dataloader + PIL", f"per sample vs DataLoader {DATALOADER_WORKERS} workers + PIL"),
        ("ours on the JPEGs", "limit (JPEG part)", "share of the libjpeg-turbo full-size decode limit, JPEG part"),
        ("ours per sample", "limit (JPEG part)", "whole mix (PNGs decoded by us) over the JPEG-only limit"),
        ("ours db source", "ours per sample", "db source (embedded engine) vs folder source"),
    ]
    for (a, b, label), aim in zip(lines, (1.5, 1.5, 3.0, 0.9, None, 0.98), strict=True):
        if runs.seconds.get(a) and runs.seconds.get(b):
            aim_text = f" (aim >= {aim:g})" if aim else ""
            cpu = runs.cpu_ms(b) / runs.cpu_ms(a)
            print(f"  {runs.ratio(a, b):6.2f}x  {label}{aim_text}; CPU per image {cpu:.2f}x")
            out[label] = runs.ratio(a, b)
    rep = reports.get("anchor sample")
    if rep:
        theirs = rep["shapes"]
        if theirs == ours_shapes:
            print(f"  buckets: both loaders gave the same {len(theirs)} bucket shapes with the same counts")
        else:
            diff = {k: (ours_shapes.get(k, 0), theirs.get(k, 0)) for k in sorted(set(ours_shapes) | set(theirs))}
            diff = {k: v for k, v in diff.items() if v[0] != v[1]}
            print(f"  buckets differ (HxW: ours, Photoroom's): {diff}")
    print(f"total {elapsed / 60:.1f} min")
    return out


if __name__ == "__main__":
    sys.exit(main())
