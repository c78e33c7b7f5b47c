"""Benchmark the data engine, in one run:

1. paging: bulk-insert synthetic datapoints with metadata, then page through ``GET /api/images/``
   of a real uvicorn server on 127.0.0.1 with page_size 2000. The server runs in this process
   (``serve_in_background``, as ``as_ml_dataset`` uses it); the client pages in a child process,
   as the native loader would page outside the GIL. "server CPU" is this process's CPU time per
   page.
2. loader: scan a folder of real photos into a datasource of the same storage, then load it
   through ``datago.DatagoClient`` with the "db" source (``ds.all().ml_dataset_config()``: the
   engine server in this process, images fetched from its signed URLs) and with the "file" source
   over the same folder; same image_config (crop_and_resize, 512-px buckets) and num_threads.
   Runs alternate (folder, db, folder, db, ...) so that drift on the machine hits both; best and
   median images/s and the ratio db / folder are printed. "CPU ms/img" is this process's CPU
   time (Go loader, and for db the engine server too) per image.

Without ``--images`` the photos come from ``benchmarks/demo_data.py`` (built once in ``--work``,
from Debian's wallpapers). Prints numbers only (no asserts). Example::

    python benchmarks/bench_engine.py                 # 100k datapoints + 1000 photos, temporary SQLite file
    python benchmarks/bench_engine.py -n 100000 --images /tmp/datago-bench-wds/photos --repeat 3
    # PostgreSQL: --db drops every table of that database first, so give it a database of its own
    su postgres -c "psql -c 'create database datago_bench owner datago'"
    python benchmarks/bench_engine.py --db postgresql+psycopg://datago:datago@127.0.0.1:5432/datago_bench --skip-loader
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_webdataset's helpers

import httpx
from bench_webdataset import image_config, load_all, photo_folder

from datago.engine import datasources, serve_in_background
from datago.engine.db import Engine

DATAROOM_FIELDS = "attributes,image_direct_url,source"  # what datago's db source asks for


# -- part 1: paging ----------------------------------------------------------------------------


def client(base: str, key: str, params: dict[str, str | int]) -> dict[str, float]:
    """GET every page following ``next``; returns rows, pages, bytes and seconds."""
    headers = {"Authorization": f"Token {key}"}
    rows = pages = nbytes = 0
    t0 = time.perf_counter()
    with httpx.Client(timeout=120) as h:
        resp = h.get(f"{base}/api/images/", params=params, headers=headers)
        while True:
            resp.raise_for_status()
            body = resp.json()
            rows += len(body["results"])
            pages += 1
            nbytes += len(resp.content)
            if not body["next"]:
                break
            resp = h.get(body["next"], headers=headers)
    return {"rows": rows, "pages": pages, "bytes": nbytes, "seconds": time.perf_counter() - t0}


def page_through(base: str, key: str, params: dict[str, str | int], label: str) -> None:
    """Page through in a separate client process (as the native loader would: the server's
    Python thread does not share the GIL with the client) and print rows/s."""
    cpu0 = time.process_time()
    out = subprocess.run(
        [sys.executable, __file__, "--client", base, key, json.dumps(params)],
        check=True,
        capture_output=True,
        text=True,
    )
    cpu = time.process_time() - cpu0  # this process only runs the server meanwhile
    r = json.loads(out.stdout)
    dt = r["seconds"]
    print(
        f"{label:<44} {r['rows']:>7} rows  {r['pages']:>3} pages  {dt:6.2f} s  {r['rows'] / dt:>9,.0f} rows/s  "
        f"{r['bytes'] / dt / 1e6:6.1f} MB/s  server CPU {cpu / r['pages'] * 1000:5.1f} ms/page",
        flush=True,
    )


def bench_paging(engine: Engine, root: Path, n: int, page_size: int) -> None:
    """Insert n synthetic datapoints with 3 metadata fields, then page through them."""
    print(f"\n== paging: {n} datapoints, page_size {page_size}")
    ds = datasources.get_or_create("bench", root, db_url=engine, scan=False)
    rng = random.Random(0)
    records = [
        {
            "path": f"img/{i // 1000:03d}/{i:07d}.jpg",
            "size": rng.randint(20_000, 2_000_000),
            "width": rng.choice((512, 768, 1024, 1920)),
            "height": rng.choice((512, 768, 1080)),
            "format": "JPEG",
        }
        for i in range(n)
    ]
    t0 = time.perf_counter()
    ds.add_datapoints(records)
    dt = time.perf_counter() - t0
    print(f"{'insert datapoints':<44} {n:>7} rows  {dt:6.2f} s  {n / dt:>9,.0f} rows/s")

    tags = ("nature", "people", "food", "animal", "city")
    updates = [
        (
            r["path"],
            {
                "aesthetic": round(rng.uniform(0, 10), 3),
                "caption": f"synthetic caption number {i}",
                "tags": ",".join(rng.sample(tags, 2)),
            },
        )
        for i, r in enumerate(records)
    ]
    from datago.engine.writes import write_metadata

    t0 = time.perf_counter()
    written = write_metadata(engine, ds.id, updates)
    dt = time.perf_counter() - t0
    print(f"{'insert metadata (3 fields)':<44} {written:>7} vals  {dt:6.2f} s  {written / dt:>9,.0f} values/s")

    base, key, stop = serve_in_background(engine)
    try:
        page = {"page_size": page_size, "fields": DATAROOM_FIELDS}
        page_through(base, key, page, "GET /api/images/ (datago fields)")
        page_through(base, key, page, "GET /api/images/ (again, warm)")
        page_through(base, key, {"page_size": page_size}, "GET /api/images/ (all fields)")
        page_through(base, key, {"page_size": page_size, "fields": "source"}, "GET /api/images/ (id+source only)")
        page_through(
            base,
            key,
            {**page, "attributes": "aesthetic__gte:5", "tags": "nature"},
            "GET /api/images/ (aesthetic>=5 & tag nature)",
        )
        page_through(base, key, {**page, "partitions_count": 4, "partition": 1}, "GET /api/images/ (partition 1 of 4)")
    finally:
        stop()


# -- part 2: loader, db source vs folder source ------------------------------------------------


def stats_text(stats: dict[str, Any]) -> str:
    """skipped, MB read and per-stage busy seconds (summed over workers) of a run."""
    busy = " ".join(f"{s['name']} {s['busy_seconds']:.1f}s" for s in stats["stages"] if s["busy_seconds"] >= 0.05)
    skipped = stats["samples_skipped"]
    reasons = f" {stats['skipped_reasons']}" if skipped else ""
    return f"skipped {skipped}{reasons}  {stats['bytes_read'] / 1e6:5.0f} MB  busy: {busy}"


def bench_loader(engine: Engine, args: argparse.Namespace) -> None:
    """Scan real photos into a datasource, then alternate folder and db runs over them."""
    import datago

    folder = photo_folder(argparse.Namespace(folder=args.images, work=args.work, n=args.n_images)).resolve()
    t0 = time.perf_counter()
    ds = datasources.get_or_create("photos", folder, db_url=engine, progress=False)
    dt = time.perf_counter() - t0
    n_db = len(ds.all())
    print(f"\n== loader: {folder}\nscan: {n_db} datapoints in {dt:.2f} s ({n_db / dt:,.0f} files/s, headers only)")
    total = 0
    for p in folder.rglob("*"):  # warm the page cache for both modes alike
        if p.is_file():
            total += len(p.read_bytes())
    threads = args.threads or os.cpu_count() or 1
    common = {"image_config": image_config(args.size), "num_threads": threads}
    modes = {
        "folder": {"source_type": "file", "source_config": {"root_path": str(folder)}, **common},
        "db": {**ds.all().ml_dataset_config(), **common},
    }
    print(
        f"datago {datago.version()}, {os.cpu_count()} cores, num_threads {threads}, {args.size}-px buckets, "
        f"db page_size {modes['db']['source_config']['page_size']}, {total / 1e6:.0f} MB of files, "
        f"{args.repeat} runs per mode, alternating; load average before: {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rates: dict[str, list[float]] = {name: [] for name in modes}
    cpu_ms: dict[str, list[float]] = {name: [] for name in modes}
    for r in range(args.repeat):
        for name, cfg in modes.items():
            n, elapsed, cpu, stats = load_all(cfg)
            rates[name].append(n / elapsed)
            cpu_ms[name].append(1000 * cpu / max(n, 1))
            note = "" if n == n_db else f"  (expected {n_db})"
            print(
                f"run {r + 1} {name:>6}: {n:>5} images{note}  {elapsed:6.2f} s  {n / elapsed:7.1f} images/s  "
                f"CPU {cpu_ms[name][-1]:5.2f} ms/img  {stats_text(stats)}",
                flush=True,
            )
    print(f"{'mode':>7}  {'best':>8}  {'median':>8}  {'CPU ms/img':>10}   runs (images/s)")
    for name in modes:
        runs = ", ".join(f"{x:.1f}" for x in rates[name])
        print(
            f"{name:>7}  {max(rates[name]):8.1f}  {statistics.median(rates[name]):8.1f}  "
            f"{statistics.median(cpu_ms[name]):10.2f}   {runs}"
        )
    best = max(rates["db"]) / max(rates["folder"])
    median = statistics.median(rates["db"]) / statistics.median(rates["folder"])
    cpu_ratio = statistics.median(cpu_ms["db"]) / statistics.median(cpu_ms["folder"])
    print(f"db / folder: {best:.3f} (best images/s), {median:.3f} (median images/s), {cpu_ratio:.3f} (CPU per image)")
    print(f"load average after: {os.getloadavg()[0]:.1f} (other work on the machine skews wall time)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=100_000, help="datapoints to insert for paging (default 100000)")
    p.add_argument("--db", default=None, help="storage URL (default: a temporary SQLite file); its tables are dropped")
    p.add_argument("--page-size", type=int, default=2000, help="page_size of the paging part")
    p.add_argument("--images", default=None, help="folder of photos for the loader part (default: demo data)")
    p.add_argument("--n-images", type=int, default=1000, help="photos to build when no --images (default 1000)")
    p.add_argument("--work", default="/tmp/datago-bench-engine", help="where the demo photos are built")
    p.add_argument("--size", type=int, default=512, help="default_image_size of the buckets")
    p.add_argument("--threads", type=int, default=0, help="num_threads of both loaders (0: the cores)")
    p.add_argument("--repeat", type=int, default=3, help="loader runs per mode")
    p.add_argument("--skip-paging", action="store_true", help="only the loader part")
    p.add_argument("--skip-loader", action="store_true", help="only the paging part")
    p.add_argument("--client", nargs=3, metavar=("BASE", "KEY", "PARAMS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        print(json.dumps(client(args.client[0], args.client[1], json.loads(args.client[2]))))
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="datago-bench-"))
    (tmp / "root").mkdir()
    engine = Engine(args.db or tmp / "engine.sqlite", blob_dir=tmp / "blobs")
    if args.db:
        engine.drop_all()
    print(f"storage: {engine}")
    try:
        if not args.skip_paging:
            bench_paging(engine, tmp / "root", args.n, args.page_size)
        if not args.skip_loader:
            bench_loader(engine, args)
    finally:
        engine.dispose()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
