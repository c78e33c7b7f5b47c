"""Resident memory of the Python client over a long run, and after many clients have closed.

Two phases, each in a fresh Python process (so that neither inherits the other's heap):

* ``curve``: one client streams real photos (``--photos``, default /usr/share/backgrounds) with
  crop-and-resize to ``--crop``-px buckets, like the demo, for ``--samples`` samples. The folder is
  a temporary directory of ``--files`` hard links to the photos, downscaled first so that their
  longer side is at most ``--max-side`` px (default 640, for speed; 0 keeps them as they are); each
  time an epoch ends the client is stopped and started again (the next epoch). Every ``--every``
  samples it prints the process's RSS (MB), what glibc malloc holds from the system and has in use
  (mallinfo2, all arenas, MB), its threads and the samples the core has handed out and not yet
  freed. At the end: the range of RSS over the points, as a percentage of the first point.
* ``clients``: ``--clients`` clients, ``--parallel`` at a time (each in a Python thread), each
  reading ``--client-samples`` samples and then closed; prints threads and RSS before the first
  client, after all of them have closed, and after an explicit ``malloc_trim(0)`` from Python (to
  show what glibc still held).

Every setting is the library's default (no ``MALLOC_ARENA_MAX``, no ``num_threads``) unless the
environment says otherwise: run it as ``MALLOC_ARENA_MAX=2 python3 benchmarks/hardening_memory.py``
to compare. Prints numbers; asserts nothing.

Usage::

    python3 benchmarks/hardening_memory.py [--samples 100000] [--every 10000] [--crop 256]
        [--max-side 640] [--clients 20] [--parallel 4] [--client-samples 1000] [--phase both]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "python"))

import datago  # noqa: E402

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}


def proc_status() -> tuple[float, int]:
    """(VmRSS in MB, number of threads) of this process, from /proc/self/status."""
    rss_kb, threads = 0, 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss_kb / 1024.0, threads


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def malloc_mb() -> tuple[float, float]:
    """(bytes glibc malloc holds from the system, bytes in use) in MB, summed over its arenas and
    mmapped chunks (mallinfo2); (nan, nan) without glibc."""
    try:
        fn = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return float("nan"), float("nan")
    fn.restype = _Mallinfo2
    mi = fn()
    return (mi.arena + mi.hblkhd) / 2**20, (mi.uordblks + mi.hblkhd) / 2**20


def photos(root: Path) -> list[Path]:
    """The JPEG and PNG files under root, sorted.

    Raises:
        SystemExit: no photo there (the benchmark needs real photos: mate-backgrounds, ...).
    """
    found = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
    if not found:
        raise SystemExit(f"no JPEG or PNG photo under {root}")
    return found


def make_folder(src: list[Path], dst: Path, files: int, max_side: int) -> None:
    """Fill dst with ``files`` entries cycling over src: hard links to one copy of each photo,
    downscaled (Lanczos, same format) so that its longer side is at most max_side px when
    max_side > 0."""
    base = dst / "_photos"
    base.mkdir()
    copies = []
    for i, p in enumerate(src):
        out = base / f"{i:03d}{p.suffix.lower()}"
        if max_side > 0:
            from PIL import Image

            with Image.open(p) as im:
                im.load()
                if max(im.size) > max_side:
                    scale = max_side / max(im.size)
                    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
                im.save(out, quality=90) if out.suffix != ".png" else im.save(out)
        else:
            shutil.copyfile(p, out)
        copies.append(out)
    for k in range(files):
        os.link(copies[k % len(copies)], dst / f"{k:06d}{copies[k % len(copies)].suffix}")
    shutil.rmtree(base)  # the links keep the files


def config(root: Path, crop: int) -> dict[str, Any]:
    """The demo's config: the folder in sorted order, crop-and-resize to crop-px buckets."""
    return {
        "source_type": "file",
        "source_config": {"root_path": str(root), "random_sampling": False},
        "image_config": {
            "crop_and_resize": True,
            "default_image_size": crop,
            "downsampling_ratio": 16,
            "min_aspect_ratio": 0.5,
            "max_aspect_ratio": 2.0,
        },
        "limit": 0,
        "samples_buffer_size": 64,
    }


def consume(sample: datago.Sample) -> int:
    """Touch the sample's pixels as a training loop would (one numpy array), return its bytes."""
    arr = sample.image_array
    return 0 if arr is None else int(arr.nbytes)


def phase_curve(root: Path, args: argparse.Namespace) -> None:
    """One client for args.samples samples, epoch after epoch; prints the RSS curve."""
    rss0, thr0 = proc_status()
    print(f"before the client: rss {rss0:.0f} MB, threads {thr0}", flush=True)
    print(
        f"{'samples':>8} {'rss_MB':>8} {'malloc_MB':>9} {'in_use_MB':>9} {'threads':>7} {'live':>5} "
        f"{'seconds':>8} {'samples/s':>9}",
        flush=True,
    )
    points: list[float] = []
    n, epochs = 0, 0
    t0 = time.monotonic()
    client = datago.DatagoClient(config(root, args.crop))
    client.start()
    next_mark = args.every
    while n < args.samples:
        s = client.get_sample()
        if s is None:  # end of the epoch: the next one
            client.stop()
            client.start()
            epochs += 1
            continue
        consume(s)
        del s
        n += 1
        if n >= next_mark:
            rss, thr = proc_status()
            live, _ = datago.live_samples()
            dt = time.monotonic() - t0
            points.append(rss)
            held, used = malloc_mb()
            print(
                f"{n:>8} {rss:>8.0f} {held:>9.0f} {used:>9.0f} {thr:>7} {live:>5} {dt:>8.0f} {n / dt:>9.0f}",
                flush=True,
            )
            next_mark += args.every
    skipped = client.stats().get("samples_skipped", 0)
    client.close()
    dt = time.monotonic() - t0
    rss, thr = proc_status()
    print(
        f"after close: rss {rss:.0f} MB, threads {thr}; {n} samples in {dt:.0f} s "
        f"({epochs} epochs restarted, {skipped} skipped in the last)",
        flush=True,
    )
    if points:
        first = points[0]
        lo, hi = min(points), max(points)
        print(
            f"RSS from {args.every} to {n} samples: {lo:.0f}..{hi:.0f} MB, "
            f"{100 * (lo - first) / first:+.1f}% .. {100 * (hi - first) / first:+.1f}% of the first point "
            f"({first:.0f} MB)",
            flush=True,
        )


def phase_clients(root: Path, args: argparse.Namespace) -> None:
    """args.clients clients, args.parallel at a time; threads and RSS once they have all closed."""
    rss0, thr0 = proc_status()
    print(f"before the clients: rss {rss0:.0f} MB, threads {thr0}", flush=True)
    peak = [rss0]
    lock = threading.Lock()
    failures: list[BaseException] = []

    def run_one() -> None:
        try:
            read_one()
        except BaseException as exc:  # reported, and the phase exits 1
            with lock:
                failures.append(exc)

    def read_one() -> None:
        with datago.DatagoClient(config(root, args.crop)) as client:
            got = 0
            while got < args.client_samples:
                s = client.get_sample()
                if s is None:
                    client.stop()
                    client.start()
                    continue
                consume(s)
                del s
                got += 1
        rss, _ = proc_status()
        with lock:
            peak[0] = max(peak[0], rss)

    t0 = time.monotonic()
    done = 0
    while done < args.clients:
        k = min(args.parallel, args.clients - done)
        workers = [threading.Thread(target=run_one) for _ in range(k)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        done += k
    dt = time.monotonic() - t0
    rss, thr = proc_status()
    live, _ = datago.live_samples()
    print(
        f"after {args.clients} clients ({args.parallel} at a time, {args.client_samples} samples each, "
        f"{dt:.0f} s) closed: rss {rss:.0f} MB (peak seen {peak[0]:.0f}), threads {thr}, live samples {live}",
        flush=True,
    )
    time.sleep(1.0)
    rss, thr = proc_status()
    print(f"one second later: rss {rss:.0f} MB, threads {thr}", flush=True)
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc_trim(0)
    rss, thr = proc_status()
    print(f"after malloc_trim(0) from Python: rss {rss:.0f} MB, threads {thr}", flush=True)
    if failures:
        raise SystemExit(f"{len(failures)} clients failed, the first with {failures[0]!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=100_000, help="samples of the RSS curve")
    ap.add_argument("--every", type=int, default=10_000, help="samples between two points of the curve")
    ap.add_argument("--photos", type=Path, default=Path("/usr/share/backgrounds"))
    ap.add_argument("--files", type=int, default=1000, help="files in the folder (links cycling over the photos)")
    ap.add_argument(
        "--max-side", type=int, default=640, help="downscale the photos first to this longer side, px (0: as they are)"
    )
    ap.add_argument("--crop", type=int, default=256, help="bucket size (default_image_size), px")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--parallel", type=int, default=4, help="clients running at once")
    ap.add_argument("--client-samples", type=int, default=1000, help="samples each client reads")
    ap.add_argument("--phase", choices=["both", "curve", "clients"], default="both")
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)  # the parent's folder (internal)
    args = ap.parse_args()
    if args.every <= 0 or args.samples < 0:
        raise SystemExit("--every must be > 0 and --samples >= 0")

    env_keys = ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES", "DATAGO_MALLOC_ARENA_MAX", "DATAGO_LIBRARY")
    env_note = {k: os.environ[k] for k in env_keys if k in os.environ}
    if args.folder is not None:
        (phase_curve if args.phase == "curve" else phase_clients)(args.folder, args)
        return
    src = photos(args.photos)
    print(
        f"{len(src)} photos from {args.photos}, {args.files} files, crop {args.crop}, "
        f"max side {args.max_side or 'as is'}; environment {env_note or 'default'}; {datago.__file__}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="dg-memory-") as tmp:
        root = Path(tmp)
        make_folder(src, root, args.files, args.max_side)
        phases = ["curve", "clients"] if args.phase == "both" else [args.phase]
        rc = 0
        for ph in phases:
            print(f"\n-- {ph}", flush=True)
            t0 = time.monotonic()
            cmd = [sys.executable, __file__, "--phase", ph, "--folder", str(root)]
            for key in ("samples", "every", "crop", "clients", "parallel", "client_samples"):
                cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
            rc |= subprocess.call(cmd)
            print(f"-- {ph}: {time.monotonic() - t0:.0f} s", flush=True)
        sys.exit(rc)


if __name__ == "__main__":
    main()
