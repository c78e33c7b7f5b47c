"""The engine server's answers to the abuse cases of issue 14: status, seconds, server RSS.

Starts ``datago serve`` (this checkout's engine, SQLite, the committed photos as datasource
"photos") on 127.0.0.1 in a child process and sends, in order:

* ``60MB POST x3 no token``: three unauthenticated 60 MB POSTs to ``/api/query``;
* ``60MB POST token``: one with a valid token (past ``--max-body-bytes``, default 16 MiB);
* ``NOT x64``, ``OR x5000``, ``OR x40000``: ``/api/query`` bodies with a NOT nested 64 deep
  and ORs of 5,000 and 40,000 conditions on one field;
* ``unknown datasource``: ``{"datasource": "photoz"}``;
* ``Host: evil.example``: a page asked with that Host (the host its ``next`` link names is shown);
* ``request after a 500``: on one keep-alive connection, a request that fails inside the server
  (a fault injected for the datasource "fault": its pages raise) then ``/api/health``.

Prints one line per request: HTTP status (or the connection error), seconds until the answer was
read, the server's RSS after it and its peak RSS (VmHWM) so far, in MB, and the start of the
answer. Asserts nothing.

Usage::

    python3 benchmarks/hardening_server.py [--max-body-bytes N] [--server-python DIR]

``--server-python`` runs the server of another checkout's ``python/`` folder (e.g. one before
issue 14's fixes, whose ``run`` has no ``max_body_bytes``: it is then not passed).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PYTHON_DIR = HERE.parent / "python"
sys.path.insert(0, str(PYTHON_DIR))

PHOTOS = HERE.parent / "tests" / "data" / "photos"

# the child: datago serve, with pages of the datasource "fault" raising (a forced 500)
SERVER = """
import sys
sys.path.insert(0, {python!r})
from datago.engine.server import context, run
page_rows = context.page_rows
def faulty(engine, spec):
    if spec.source_names == ["fault"]:
        raise RuntimeError("injected fault")
    return page_rows(engine, spec)
context.page_rows = faulty
import inspect
options = {{"max_body_bytes": {max_body}}} if "max_body_bytes" in inspect.signature(run).parameters else {{}}
run({db!r}, host="127.0.0.1", port={port}, **options)
"""


def rss_mb(pid: int) -> tuple[float, float]:
    """``(VmRSS, VmHWM)`` of a process in MB."""
    vals = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            vals[key] = int(rest.split()[0]) / 1024
    return vals["VmRSS"], vals["VmHWM"]


class Conn:
    """One keep-alive HTTP/1.1 connection (raw socket: a reset shows as such, not retried)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.reader = self.sock.makefile("rb")

    def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        """Send a request, read the answer: ``(status, headers, body)``.

        Raises:
            OSError: the connection failed (reset, closed).
        """
        head = {"Host": f"127.0.0.1:{self.port}", **headers}
        if body or method == "POST":
            head["Content-Length"] = str(len(body))
        text = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
        self.sock.sendall(text.encode())
        view = memoryview(body)
        for i in range(0, len(body), 1 << 20):
            self.sock.sendall(view[i : i + (1 << 20)])
        status_line = self.reader.readline()
        if not status_line:
            raise ConnectionError("connection closed by the server")
        answer_headers = {}
        while (line := self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            answer_headers[name.strip().lower()] = value.strip()
        data = self.reader.read(int(answer_headers.get("content-length", "0")))
        return int(status_line.split()[1]), answer_headers, data

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def report(name: str, pid: int, fn: Any) -> None:
    """Run ``fn() -> (status, body)`` and print its line."""
    t0 = time.perf_counter()
    try:
        status, detail = fn()
        shown = str(status)
    except OSError as e:
        shown, detail = type(e).__name__.removesuffix("Error"), str(e)
    dt = time.perf_counter() - t0
    rss, peak = rss_mb(pid)
    text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
    print(f"{name:<26} {shown:>15} {dt:8.3f} s  rss {rss:6.1f} MB  peak {peak:6.1f} MB  {text[:110]}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-body-bytes", type=int, default=16 << 20, help="the server's limit (default 16 MiB)")
    ap.add_argument(
        "--server-python", default=str(PYTHON_DIR), help="python/ folder the server runs from (default this checkout's)"
    )
    args = ap.parse_args()

    from datago.engine import datasources
    from datago.engine.db import Engine
    from datago.engine.tokens import create_token

    tmp = tempfile.mkdtemp(prefix="datago-hardening-server-")
    db = os.path.join(tmp, "engine.sqlite")
    engine = Engine(db)
    ds = datasources.get_or_create("photos", PHOTOS, db_url=engine, progress=False)
    for i, d in enumerate(ds.all()):
        ds.update_metadata(d.path, {"aesthetic": float(i), "tags": "a,b"})
    datasources.get_or_create("fault", PHOTOS, db_url=engine, progress=False)
    key = create_token(engine, "bench")
    engine.dispose()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = SERVER.format(python=args.server_python, db=db, port=port, max_body=args.max_body_bytes)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                c = Conn(port)
                if c.request("GET", "/api/health", {})[0] == 200:
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.1)
        c.close()
        rss, _ = rss_mb(proc.pid)
        print(
            f"server ({args.server_python}) pid {proc.pid} on 127.0.0.1:{port}, "
            f"--max-body-bytes {args.max_body_bytes}; "
            f"rss at start {rss:.1f} MB"
        )
        print(f"{'case':<26} {'status':>15} {'time':>10}  {'server RSS after':<16}  {'peak':<14} answer")
        tok = {"Authorization": f"Token {key}", "Content-Type": "application/json"}
        # valid JSON (a server that parses before checking the token parses all of it)
        big = b'{"datasource": "photos", "cursor": "' + b"1" * ((60 << 20) - 40) + b'"}'

        def post(conn: Conn, body: Any, headers: dict[str, str] = tok) -> tuple[int, bytes]:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            status, _, data = conn.request("POST", "/api/query", headers, raw)
            return status, data

        def fresh(fn: Any) -> Any:  # on a connection of its own (an earlier case may have broken one)
            def run() -> Any:
                conn = Conn(port)
                try:
                    return fn(conn)
                finally:
                    conn.close()

            return run

        for i in range(3):
            report(
                f"60MB POST x3 no token #{i + 1}",
                proc.pid,
                fresh(lambda conn: post(conn, big, {"Content-Type": "application/json"})),
            )
        report("60MB POST token", proc.pid, fresh(lambda conn: post(conn, big)))
        nots: dict[str, Any] = {"field": "aesthetic", "op": "gt", "value": 1}
        for _ in range(64):
            nots = {"not": nots}
        report("NOT x64", proc.pid, fresh(lambda conn: post(conn, {"datasource": "photos", "query": nots})))
        for n in (5000, 40000):
            q = {"or": [{"field": "aesthetic", "op": "eq", "value": i} for i in range(n)]}
            report(f"OR x{n}", proc.pid, fresh(lambda conn, q=q: post(conn, {"datasource": "photos", "query": q})))
        report("unknown datasource", proc.pid, fresh(lambda conn: post(conn, {"datasource": "photoz"})))

        def evil(conn: Conn) -> tuple[int, str]:
            status, _, data = conn.request("GET", "/api/images/?page_size=2", {**tok, "Host": "evil.example"})
            return status, "next: " + str(json.loads(data).get("next"))

        report("Host: evil.example", proc.pid, fresh(evil))
        conn = Conn(port)
        report("request making a 500", proc.pid, lambda: post(conn, {"datasource": "fault"}))
        report("request after the 500", proc.pid, lambda: conn.request("GET", "/api/health", {})[::2])
        conn.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
