"""Throughput of the WebDataset source: folder vs local shards vs shards over loopback HTTP.

Builds (or reuses) a folder of ~1000 photos, packs its JPEGs into WebDataset shards of ~100
samples, then measures images/s through ``datago.DatagoClient`` with 512-px buckets for:

* ``folder``: the filesystem source over the same JPEGs;
* ``local``: ``source_type: webdataset`` over the shard files;
* ``http``: the same shards served by a loopback HTTP server (a child process using sendfile, so
  that serving costs little CPU and no GIL in this process).

Modes are interleaved run by run, so that drift (other work on the machine) hits all of them; the
CPU time per image (this process plus the server) is printed too, as it does not depend on load.

Usage::

    python benchmarks/bench_webdataset.py [--folder PATH] [-n 1000] [--per-shard 100] [--repeat 3]

Without ``--folder`` the photos come from ``benchmarks/demo_data.py`` (``build_dataset``) when it
exists, else from a quick set of crops of the wallpapers. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "python"))
sys.path.insert(0, str(HERE))

IMAGE_EXTS = {".jpg", ".jpeg"}


# -- data --------------------------------------------------------------------------------------


def quick_photos(out_dir: Path, n: int) -> Path:
    """n JPEG crops (short side 512-1024 px) of the Debian wallpapers."""
    import numpy as np
    from PIL import Image

    marker = out_dir / f".quick-{n}"
    if marker.exists():
        return out_dir
    sources = sorted(Path("/usr/share/backgrounds/mate/nature").glob("*.jpg"))
    sources += sorted(Path("/usr/share/backgrounds").glob("*.jpg"))
    if not sources:
        raise SystemExit("no wallpapers found: apt-get install mate-backgrounds, or pass --folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    loaded = [Image.open(p).convert("RGB") for p in sources]
    for i in range(n):
        src = loaded[i % len(loaded)]
        aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        short = int(rng.integers(512, 1025))
        w, h = (round(short * aspect), short) if aspect >= 1 else (short, round(short / aspect))
        scale = min(src.width / w, src.height / h, 2.0) * float(rng.uniform(0.5, 1.0))
        cw, ch = min(src.width, int(w * scale)), min(src.height, int(h * scale))
        x, y = int(rng.integers(0, src.width - cw + 1)), int(rng.integers(0, src.height - ch + 1))
        im = src.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.BILINEAR)
        im.save(out_dir / f"{i:05d}.jpg", quality=int(rng.integers(75, 95)))
    marker.touch()
    return out_dir


def photo_folder(args: argparse.Namespace) -> Path:
    if args.folder:
        return Path(args.folder)
    out = Path(args.work) / "photos"
    try:
        from demo_data import build_dataset  # the demo-data builder, when present
    except ImportError:
        print("benchmarks/demo_data.py not found: making a quick set from the wallpapers")
        return quick_photos(out, args.n)
    print(f"building / reusing the demo data set ({args.n} photos) in {out}")
    return Path(build_dataset(out, args.n))


def jpeg_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def jpeg_view(folder: Path, files: list[Path], work: Path) -> Path:
    """A folder holding only the JPEGs (symlinks), so that all three runs read the same images."""
    if len(files) == sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        return folder
    view = work / "jpeg_view"
    if view.exists():
        for p in view.iterdir():
            p.unlink()
    view.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        (view / f"{i:06d}{f.suffix.lower()}").symlink_to(f.resolve())
    return view


def pack(files: list[Path], out_dir: Path, per_shard: int) -> int:
    """WebDataset shards of per_shard samples (<key>.jpg + <key>.json); returns the shard count."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("train-*.tar"):
        old.unlink()
    n_shards = 0
    for s, start in enumerate(range(0, len(files), per_shard)):
        with tarfile.open(out_dir / f"train-{s:06d}.tar", "w", format=tarfile.USTAR_FORMAT) as tf:
            for i, f in enumerate(files[start : start + per_shard], start):
                key = f"{i:06d}"
                tf.add(f, arcname=f"{key}.jpg", recursive=False)
                meta = f'{{"file": "{f.name}", "index": {i}}}'.encode()
                info = tarfile.TarInfo(f"{key}.json")
                info.size = len(meta)
                tf.addfile(info, io.BytesIO(meta))
        n_shards = s + 1
    return n_shards


# -- loopback server (child process) -----------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    root = Path(".")

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = (self.root / self.path.lstrip("/")).resolve()
        if self.root not in path.parents or not path.is_file():
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = path.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", "application/x-tar")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        self.wfile.flush()
        with open(path, "rb") as f:
            self.connection.sendfile(f, 0, size)


def serve(root: str) -> None:
    _Handler.root = Path(root).resolve()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    print(httpd.server_address[1], flush=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    sys.stdin.read()  # until the parent closes our stdin


def start_server(root: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    port = int(proc.stdout.readline())  # type: ignore[union-attr]
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    return proc, f"http://127.0.0.1:{port}"


# -- measurement -------------------------------------------------------------------------------


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process pid (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_all(cfg: dict[str, Any]) -> tuple[int, float, float, dict[str, Any]]:
    """One run: (samples, wall seconds, CPU seconds of this process, the client's stats)."""
    import datago

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    n = 0
    with datago.DatagoClient(cfg) as client:
        for s in client:
            _ = s.image_array.shape  # touch the pixels' view, as a training loop would
            n += 1
        elapsed = time.perf_counter() - t0
        stats = client.stats()
    return n, elapsed, time.process_time() - cpu0, stats


def measure(cfg: dict[str, Any], server_pid: int | None) -> tuple[int, float, float]:
    """One run: (samples, wall seconds, CPU seconds of this process and of the server)."""
    server0 = proc_cpu(server_pid) if server_pid else 0.0
    n, elapsed, cpu, stats = load_all(cfg)
    cpu += (proc_cpu(server_pid) if server_pid else 0.0) - server0
    if stats["skipped_reasons"]:
        print(f"  skipped: {stats['skipped_reasons']}")
    return n, elapsed, cpu


def image_config(size: int) -> dict[str, Any]:
    return {
        "crop_and_resize": True,
        "default_image_size": size,
        "downsampling_ratio": 16,
        "min_aspect_ratio": 0.5,
        "max_aspect_ratio": 2.0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--folder", help="folder of photos (default: build or reuse demo data)")
    ap.add_argument("-n", type=int, default=1000, help="photos to build when no --folder")
    ap.add_argument("--per-shard", type=int, default=100)
    ap.add_argument("--size", type=int, default=512, help="default_image_size of the buckets")
    ap.add_argument("--repeat", type=int, default=3, help="runs per mode")
    ap.add_argument("--concurrent-downloads", type=int, default=0, help="0: the source's default")
    ap.add_argument("--work", default="/tmp/datago-bench-wds")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0

    import datago

    work = Path(args.work)
    folder = photo_folder(args)
    files = jpeg_files(folder)
    if not files:
        raise SystemExit(f"no JPEG in {folder}")
    view = jpeg_view(folder, files, work)
    shards = work / "shards"
    t0 = time.perf_counter()
    n_shards = pack(files, shards, args.per_shard)
    total = sum(p.stat().st_size for p in shards.glob("train-*.tar"))
    print(
        f"{len(files)} JPEGs from {folder} -> {n_shards} shards ({total / 2**20:.0f} MiB) "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    for p in shards.glob("train-*.tar"):  # warm the page cache for every mode alike
        p.read_bytes()
    pattern = f"train-{{000000..{n_shards - 1:06d}}}.tar"
    source_extra = {}
    if args.concurrent_downloads:
        source_extra["concurrent_downloads"] = args.concurrent_downloads

    proc, base = start_server(shards)
    try:
        modes = {
            "folder": {"source_type": "file", "source_config": {"root_path": str(view)}},
            "local": {
                "source_type": "webdataset",
                "source_config": {"url": str(shards / pattern), **source_extra},
            },
            "http": {
                "source_type": "webdataset",
                "source_config": {"url": f"{base}/{pattern}", **source_extra},
            },
        }
        print(
            f"datago {datago.version()}, {os.cpu_count()} cores, {args.size}-px buckets, "
            f"{args.repeat} runs per mode, interleaved; load average before: {os.getloadavg()[0]:.1f}"
        )
        for cfg in modes.values():
            cfg["image_config"] = image_config(args.size)
        rates: dict[str, list[float]] = {name: [] for name in modes}
        cpu_ms: dict[str, list[float]] = {name: [] for name in modes}
        for _ in range(args.repeat):
            for name, cfg in modes.items():
                n, elapsed, cpu = measure(cfg, proc.pid if name == "http" else None)
                if n != len(files):
                    print(f"  {name}: {n} samples, expected {len(files)}")
                rates[name].append(n / elapsed)
                cpu_ms[name].append(1000 * cpu / max(n, 1))
        print(f"{'mode':>7}  {'best':>8}  {'median':>8}  {'CPU ms/img':>10}   runs (images/s)")
        for name in modes:
            runs = ", ".join(f"{r:.0f}" for r in rates[name])
            print(
                f"{name:>7}  {max(rates[name]):8.1f}  {statistics.median(rates[name]):8.1f}  "
                f"{statistics.median(cpu_ms[name]):10.2f}   {runs}"
            )
        best = {name: max(r) for name, r in rates.items()}
        cpu = {name: statistics.median(c) for name, c in cpu_ms.items()}
        print(
            f"http / local: {best['http'] / best['local']:.3f} (best images/s), "
            f"{cpu['local'] / cpu['http']:.3f} (CPU per image, incl. the server); "
            f"local / folder: {best['local'] / best['folder']:.3f}"
        )
        print(f"load average after: {os.getloadavg()[0]:.1f} (other work on the machine skews wall time)")
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
