"""Throughput of WebDataset shards in a bucket (s3://, a moto_server on loopback) against the same
shards served as plain HTTP on loopback (bench_webdataset's sendfile server).

Both go through the same Go HTTP layer: for s3:// the core lists the bucket and presigns the GETs
(minio-go), then streams them like any URL. Modes are interleaved run by run. Needs
``moto_server`` (PyPI ``moto[server]``). Prints numbers; asserts nothing.

Usage::

    python benchmarks/bench_s3.py [--folder PATH] [-n 1000] [--per-shard 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_webdataset import image_config, jpeg_files, measure, pack, photo_folder, start_server


def start_moto() -> tuple[subprocess.Popen, str]:
    exe = shutil.which("moto_server")
    if exe is None:
        raise SystemExit("moto_server not found: pip install 'moto[server]'")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(600):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--folder", help="folder of photos (default: build or reuse demo data)")
    ap.add_argument("-n", type=int, default=1000, help="photos to build when no --folder")
    ap.add_argument("--per-shard", type=int, default=100)
    ap.add_argument("--size", type=int, default=512, help="default_image_size of the buckets")
    ap.add_argument("--repeat", type=int, default=3, help="runs per mode")
    ap.add_argument("--work", default="/tmp/datago-bench-s3")
    args = ap.parse_args(argv)

    import boto3

    import datago

    work = Path(args.work)
    files = jpeg_files(photo_folder(args))
    shards = work / "shards"
    n_shards = pack(files, shards, args.per_shard)
    total = sum(p.stat().st_size for p in shards.glob("train-*.tar"))
    pattern = f"train-{{000000..{n_shards - 1:06d}}}.tar"
    http_proc, base = start_server(shards)
    moto, endpoint = start_moto()
    try:
        s3 = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
        )
        s3.create_bucket(Bucket="bench")
        for p in sorted(shards.glob("train-*.tar")):
            s3.upload_file(str(p), "bench", f"shards/{p.name}")
        s3cfg = {"endpoint_url": endpoint, "region": "us-east-1", "access_key_id": "k", "secret_access_key": "s"}
        modes = {
            "http": {"source_type": "webdataset", "source_config": {"url": f"{base}/{pattern}"}},
            "s3": {"source_type": "webdataset", "source_config": {"url": f"s3://bench/shards/{pattern}"}, "s3": s3cfg},
        }
        print(
            f"datago {datago.version()}, {os.cpu_count()} cores, {len(files)} JPEGs in {n_shards} shards "
            f"({total / 2**20:.0f} MiB), {args.size}-px buckets, {args.repeat} runs per mode, interleaved; "
            f"load average before: {os.getloadavg()[0]:.1f}"
        )
        for cfg in modes.values():
            cfg["image_config"] = image_config(args.size)
        rates: dict[str, list[float]] = {m: [] for m in modes}
        for _ in range(args.repeat):
            for name, cfg in modes.items():
                n, elapsed, _cpu = measure(cfg, None)
                if n != len(files):
                    print(f"  {name}: {n} samples, expected {len(files)}")
                rates[name].append(n / elapsed)
        for name, r in rates.items():
            runs = ", ".join(f"{x:.0f}" for x in r)
            print(f"{name:>5}  best {max(r):7.1f}  median {statistics.median(r):7.1f} images/s   runs: {runs}")
        print(f"s3 / http: {max(rates['s3']) / max(rates['http']):.3f} (best images/s)")
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        http_proc.stdin.close()  # type: ignore[union-attr]
        http_proc.wait(timeout=10)
        moto.terminate()
        moto.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
