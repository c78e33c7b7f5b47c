"""How long each HTTP fault takes to surface through the Python client, with the DEFAULT settings.

Starts one misbehaving server per fault on 127.0.0.1 and reads a WebDataset shard from it through
``datago.DatagoClient`` (no ``http_*`` keys: the defaults), until ``get_sample`` raises, returns a
sample or the stream ends. The faults:

* ``drip``: 200 with the shard's Content-Length, then one byte per second (Range answered too);
* ``stalled headers``: accepts the request and never answers;
* ``redirect loop``: ``/a.tar`` -> ``/b.tar`` -> ``/a.tar`` ...;
* ``404 shard``, ``HTML-200 shard`` (an error page answered with 200);
* ``connection refused``: nothing listens on the port;
* ``reset mid-body``: every answer is reset (RST) after 4 KiB of the shard (Range answered too).

The faults run in parallel (each waits on its server, not on the CPU), so the whole run takes about
as long as the slowest fault; each is capped at ``--cap`` seconds (reported as "no error"). Prints
one line per fault: seconds, what surfaced (exception class and message, or a sample) and the
client's ``stats()["http"]`` counters. Asserts nothing.

Usage::

    python3 benchmarks/hardening_http.py [--cap 150]
"""

from __future__ import annotations

import argparse
import io
import socket
import struct
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "python"))

import datago  # noqa: E402

PHOTOS = HERE.parent / "tests" / "data" / "photos"
HTML = b"<!DOCTYPE html><html><head><title>Service unavailable</title></head><body>Try later.</body></html>\n"


def shard_bytes() -> bytes:
    """A tar shard of the committed photos (one JPEG per sample)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for i, p in enumerate(sorted(PHOTOS.glob("*.jp*g"))[:4]):
            data = p.read_bytes()
            info = tarfile.TarInfo(f"sample_{i:04d}.jpg")
            info.size, info.mtime = len(data), 1700000000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


SHARD = shard_bytes()


class Server:
    """A ThreadingHTTPServer on 127.0.0.1 whose GET handler is handle(handler, stop_event)."""

    def __init__(self, handle: Callable[[BaseHTTPRequestHandler, threading.Event], None]) -> None:
        self.stop = threading.Event()
        stop = self.stop

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                try:
                    handle(self, stop)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def range_start(h: BaseHTTPRequestHandler) -> int:
    r = h.headers.get("Range", "")
    if r.startswith("bytes=") and r.endswith("-"):
        return int(r[len("bytes="):-1])
    return 0


def send_head(h: BaseHTTPRequestHandler, start: int, ctype: str = "application/x-tar") -> None:
    if start:
        h.send_response(206)
        h.send_header("Content-Range", f"bytes {start}-{len(SHARD) - 1}/{len(SHARD)}")
    else:
        h.send_response(200)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(SHARD) - start))
    h.send_header("Last-Modified", "Tue, 14 Nov 2023 22:13:20 GMT")
    h.end_headers()


def drip(h: BaseHTTPRequestHandler, stop: threading.Event) -> None:
    start = range_start(h)
    send_head(h, start)
    for i in range(start, len(SHARD)):
        h.wfile.write(SHARD[i : i + 1])
        h.wfile.flush()
        if stop.wait(1.0):
            return


def stall_headers(h: BaseHTTPRequestHandler, stop: threading.Event) -> None:
    stop.wait()
    h.close_connection = True


def redirect_loop(h: BaseHTTPRequestHandler, stop: threading.Event) -> None:
    h.send_response(302)
    h.send_header("Location", "/b.tar" if h.path.startswith("/a.tar") else "/a.tar")
    h.send_header("Content-Length", "0")
    h.end_headers()


def not_found(h: BaseHTTPRequestHandler, stop: threading.Event) -> None:
    body = b"not found\n"
    h.send_response(404)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def html_200(h: BaseHTTPRequestHandler, stop: threading.Event) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/html; charset=utf-8")
    h.send_header("Content-Length", str(len(HTML)))
    h.end_headers()
    h.wfile.write(HTML)


def reset_mid_body(h: BaseHTTPRequestHandler, stop: threading.Event) -> None:
    start = range_start(h)
    send_head(h, start)
    h.wfile.write(SHARD[start : start + 4096])
    h.wfile.flush()
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close -> RST
    h.connection.close()
    h.close_connection = True


def refused_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/shard.tar"


FAULTS: list[tuple[str, Callable[[BaseHTTPRequestHandler, threading.Event], None] | None, str]] = [
    ("drip (1 B/s)", drip, "/shard.tar"),
    ("stalled headers", stall_headers, "/shard.tar"),
    ("redirect loop", redirect_loop, "/a.tar"),
    ("404 shard", not_found, "/shard.tar"),
    ("HTML-200 shard", html_200, "/shard.tar"),
    ("connection refused", None, ""),
    ("reset mid-body", reset_mid_body, "/shard.tar"),
]


def run(name: str, handle: Callable | None, path: str, cap: float) -> tuple[str, float, str, dict]:
    """Reads the shard until something surfaces; returns (name, seconds, outcome, http stats)."""
    srv = Server(handle) if handle else None
    url = srv.url(path) if srv else refused_url()
    cfg = {"source_type": "webdataset", "source_config": {"url": url}, "samples_buffer_size": 8}
    t0 = time.monotonic()
    client = datago.DatagoClient(cfg)
    http: dict = {}
    try:
        try:
            s = client.get_sample(timeout=cap)
            outcome = "end of stream, no sample" if s is None else f"a sample ({s.id})"
            del s
        except datago.SampleTimeoutError:
            outcome = f"no sample and no error after {cap:.0f} s"
        except datago.DatagoError as e:
            msg = str(e)
            outcome = f"{type(e).__name__}: {msg[:170]}{'…' if len(msg) > 170 else ''}"
        dt = time.monotonic() - t0
        http = client.stats().get("http", {})
    finally:
        client.close()
        if srv:
            srv.close()
    return name, dt, outcome, http


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cap", type=float, default=150, help="seconds to wait per fault (default 150)")
    args = ap.parse_args()
    datago.initialize_logging("off")
    t0 = time.monotonic()
    with ThreadPoolExecutor(len(FAULTS)) as pool:
        results = list(pool.map(lambda f: run(*f, args.cap), FAULTS))
    print(f"HTTP faults with the default settings (datago {datago.__version__}), shard of {len(SHARD)} bytes")
    for name, dt, outcome, http in results:
        counts = " ".join(f"{k}={v}" for k, v in http.items() if v) or "-"
        print(f"  {name:<19} {dt:6.1f} s  {outcome}  [http: {counts}]")
    print(f"  total wall time {time.monotonic() - t0:.1f} s (faults run in parallel)")


if __name__ == "__main__":
    main()
