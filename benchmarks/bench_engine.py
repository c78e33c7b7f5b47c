"""Benchmark the data engine: bulk-insert synthetic datapoints with metadata, then page through
``GET /api/images/`` of a real uvicorn server on 127.0.0.1 with page_size 2000.

The server runs in this process (``serve_in_background``, as ``as_ml_dataset`` uses it); the
client pages in a child process, as the native loader would page outside the GIL. "server CPU"
is this process's CPU time per page. Prints numbers only (no asserts). Example::

    python benchmarks/bench_engine.py                 # 100k datapoints, temporary SQLite file
    python benchmarks/bench_engine.py --db "$DATAGO_TEST_POSTGRES_URL" -n 100000
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import httpx

from datago.engine import datasources, serve_in_background
from datago.engine.db import Engine

DATAROOM_FIELDS = "attributes,image_direct_url,source"  # what datago's db source asks for


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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=100_000, help="datapoints to insert (default 100000)")
    p.add_argument("--db", default=None, help="storage URL (default: a temporary SQLite file)")
    p.add_argument("--page-size", type=int, default=2000)
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
    print(f"storage: {engine}  datapoints: {args.n}")
    ds = datasources.get_or_create("bench", tmp / "root", db_url=engine, scan=False)

    rng = random.Random(0)
    records = [
        {
            "path": f"img/{i // 1000:03d}/{i:07d}.jpg",
            "size": rng.randint(20_000, 2_000_000),
            "width": rng.choice((512, 768, 1024, 1920)),
            "height": rng.choice((512, 768, 1080)),
            "format": "JPEG",
        }
        for i in range(args.n)
    ]
    t0 = time.perf_counter()
    ds.add_datapoints(records)
    dt = time.perf_counter() - t0
    print(f"{'insert datapoints':<44} {args.n:>7} rows  {dt:6.2f} s  {args.n / dt:>9,.0f} rows/s")

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
        size = args.page_size
        page_through(base, key, {"page_size": size, "fields": DATAROOM_FIELDS}, "GET /api/images/ (datago fields)")
        page_through(base, key, {"page_size": size, "fields": DATAROOM_FIELDS}, "GET /api/images/ (again, warm)")
        page_through(base, key, {"page_size": size}, "GET /api/images/ (all fields)")
        page_through(base, key, {"page_size": size, "fields": "source"}, "GET /api/images/ (id+source only)")
        page_through(
            base,
            key,
            {"page_size": size, "fields": DATAROOM_FIELDS, "attributes": "aesthetic__gte:5", "tags": "nature"},
            "GET /api/images/ (aesthetic>=5 & tag nature)",
        )
        page_through(
            base,
            key,
            {"page_size": size, "fields": DATAROOM_FIELDS, "partitions_count": 4, "partition": 1},
            "GET /api/images/ (partition 1 of 4)",
        )
    finally:
        stop()
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
