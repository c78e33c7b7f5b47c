"""Helpers of the WebDataset tests: shards built from real photographs, and a shard server.

``make_samples`` cuts samples out of real photos: a JPEG, a mask (mode L PNG), an extra image (PNG of
another size), JSON metadata, a class and a small ``.npy`` latent. ``write_shards`` packs them into
tar shards following the WebDataset convention. ``ShardServer`` serves a folder over HTTP on
127.0.0.1 from a thread: HTTP/1.1 keep-alive, ``Range: bytes=N-`` / ``N-M`` (206 + Content-Range),
an access log, and per-file fault injection (errors, cut connections, stalls, no Range support).
"""

from __future__ import annotations

import functools
import io
import json
import re
import socket
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

# -- shards ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _sources(photos: tuple[Path, ...], max_side: int) -> tuple[Image.Image, ...]:
    """The photos, reduced (JPEG draft mode: fast) so that their long side is about max_side."""
    out = []
    for p in photos:
        im = Image.open(p)
        im.draft("RGB", (max_side, max_side))
        im = im.convert("RGB")
        im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        out.append(im)
    return tuple(out)


def make_samples(
    photos: list[Path], n: int, *, seed: int = 0, short_side: tuple[int, int] = (160, 288)
) -> list[tuple[str, dict[str, bytes]]]:
    """n samples cut from real photos, as (key, {extension: bytes}) in tar order.

    Every sample has ``jpg`` (RGB crop, aspect ratio in [0.5, 2]), ``json`` (typed metadata),
    ``mask.png`` (mode L, same size as the jpg), ``png`` (mirrored copy at 3/4 size), ``cls`` and
    ``latent.npy`` (float32 array).
    """
    rng = np.random.default_rng(seed)
    sources = _sources(tuple(photos), 2 * short_side[1])
    samples = []
    for i in range(n):
        src = sources[i % len(sources)]
        aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        short = int(rng.integers(short_side[0], short_side[1] + 1))
        w, h = (round(short * aspect), short) if aspect >= 1 else (short, round(short / aspect))
        scale = min(src.width / w, src.height / h) * float(rng.uniform(0.6, 1.0))
        cw, ch = int(w * scale), int(h * scale)
        x = int(rng.integers(0, src.width - cw + 1))
        y = int(rng.integers(0, src.height - ch + 1))
        crop = src.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.BILINEAR)
        grey = np.asarray(crop.convert("L"))
        mask = Image.fromarray(np.where(grey > grey.mean(), 255, 0).astype(np.uint8), "L")
        extra = ImageOps.mirror(crop).resize((max(1, w * 3 // 4), max(1, h * 3 // 4)))
        key = f"sample_{i:05d}"
        meta = {
            "index": i,
            "caption": f"crop {i} of {photos[i % len(photos)].stem}",
            "score": round(float(rng.uniform()), 4),
            "size": [w, h],
            "nsfw": False,
        }
        latent = io.BytesIO()
        np.save(latent, (np.arange(8, dtype=np.float32) * (i + 1)).reshape(2, 4))
        samples.append(
            (
                key,
                {
                    "jpg": _encode(crop, "JPEG", quality=90),
                    "json": _json(meta),
                    "mask.png": _encode(mask, "PNG"),
                    "png": _encode(extra, "PNG"),
                    "cls": str(i % 5).encode(),
                    "latent.npy": latent.getvalue(),
                },
            )
        )
    return samples


def _encode(im: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def tar_bytes(samples: list[tuple[str, dict[str, bytes]]]) -> bytes:
    """A tar of the samples: entries ``<key>.<ext>`` in order, fixed metadata (deterministic)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for key, files in samples:
            for ext, data in files.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
                info.uname = info.gname = "datago"
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_shards(
    out_dir: Path,
    samples: list[tuple[str, dict[str, bytes]]],
    per_shard: int,
    prefix: str = "shard",
) -> list[Path]:
    """Pack samples into ``<prefix>-000000.tar``, ... of per_shard samples each."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for s, start in enumerate(range(0, len(samples), per_shard)):
        path = out_dir / f"{prefix}-{s:06d}.tar"
        path.write_bytes(tar_bytes(samples[start : start + per_shard]))
        paths.append(path)
    return paths


# -- server ------------------------------------------------------------------------------------


@dataclass
class Fault:
    """What goes wrong when a file is requested (all counts are per file, 1-based).

    Attributes:
        status: always answer this status (e.g. 404, 403).
        fail_times / fail_status: the first fail_times requests answer fail_status (e.g. 500).
        retry_after: Retry-After header sent with fail_status.
        cut_after / cut_times: the first cut_times requests break the connection after cut_after
            body bytes (Content-Length promises the full length).
        stall_after: the file is sent up to byte stall_after (a resumed request sends nothing), then
            nothing more until the server stops.
        no_range: ignore Range headers (always 200 with the whole file).
    """

    status: int = 0
    fail_times: int = 0
    fail_status: int = 500
    retry_after: str = ""
    cut_after: int = -1
    cut_times: int = 1
    stall_after: int = -1
    no_range: bool = False


@dataclass
class LogEntry:
    path: str
    range: str
    authorization: str
    status: int
    n: int  # 1-based request number for this path


@dataclass
class ShardServer:
    """Serves root over HTTP on 127.0.0.1 from a background thread (use as a context manager)."""

    root: Path
    faults: dict[str, Fault] = field(default_factory=dict)
    log: list[LogEntry] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counts: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def __enter__(self) -> ShardServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()  # releases stalled handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def base(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def requests(self, path: str | None = None) -> list[LogEntry]:
        with self._lock:
            return [e for e in self.log if path is None or e.path == path]

    def _count(self, path: str) -> int:
        with self._lock:
            self._counts[path] = self._counts.get(path, 0) + 1
            return self._counts[path]


_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so that the client's connection reuse is exercised

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the ShardServer keeps its own access log

    def _log(self, path: str, n: int, status: int) -> None:
        srv: ShardServer = self.server.owner  # type: ignore[attr-defined]
        entry = LogEntry(path, self.headers.get("Range", ""), self.headers.get("Authorization", ""), status, n)
        with srv._lock:
            srv.log.append(entry)

    def _plain(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        srv: ShardServer = self.server.owner  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0].lstrip("/")
        n = srv._count(path)
        fault = srv.faults.get(path, Fault())
        file = (srv.root / path).resolve()
        if fault.status:
            self._log(path, n, fault.status)
            return self._plain(fault.status, b"fault\n")
        if n <= fault.fail_times:
            self._log(path, n, fault.fail_status)
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return self._plain(fault.fail_status, b"injected failure\n", extra)
        if srv.root.resolve() not in file.parents or not file.is_file():
            self._log(path, n, 404)
            return self._plain(404, b"not found\n")
        size = file.stat().st_size
        start, end = 0, size - 1
        status = 200
        match = _RANGE.match(self.headers.get("Range", ""))
        if match and not fault.no_range:
            start = int(match.group(1))
            end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            if start >= size or end < start:
                self._log(path, n, 416)
                return self._plain(416, b"", {"Content-Range": f"bytes */{size}"})
            status = 206
        length = end - start + 1
        self._log(path, n, status)
        self.send_response(status)
        self.send_header("Content-Type", "application/x-tar")
        self.send_header("Accept-Ranges", "none" if fault.no_range else "bytes")
        self.send_header("Content-Length", str(length))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        self.wfile.flush()
        limit = length
        if fault.cut_after >= 0 and n <= fault.cut_times:
            limit = min(length, fault.cut_after)
        if fault.stall_after >= 0:  # the file's bytes from stall_after on never come
            limit = min(limit, max(0, fault.stall_after - start))
        with open(file, "rb") as f:
            if limit > 0:
                self.connection.sendfile(f, start, limit)
        if limit == length:
            return
        if fault.stall_after >= 0:
            srv._stop.wait(60)  # nothing more until the server stops
        # break the connection: the client sees fewer bytes than Content-Length
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def truncate(path: Path, keep: int, out: Path | None = None) -> Path:
    """A copy of path (or path itself) cut to its first keep bytes."""
    data = path.read_bytes()[:keep]
    out = out or path
    out.write_bytes(data)
    return out


def entry_offset(shard: Path, name: str) -> int:
    """Byte offset of the content of the tar entry called name."""
    with tarfile.open(shard) as tf:
        for info in tf:
            if info.name == name:
                return info.offset_data
    raise KeyError(name)


def replace_entry(shard: Path, name: str, data: bytes) -> None:
    """Rewrite a shard with the content of one entry replaced (same order, same other entries)."""
    with tarfile.open(shard) as tf:
        entries = [(info, tf.extractfile(info).read()) for info in tf]  # type: ignore[union-attr]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as out:
        for info, content in entries:
            if info.name == name:
                content = data
            info.size = len(content)
            out.addfile(info, io.BytesIO(content))
    shard.write_bytes(buf.getvalue())


__all__ = [
    "Fault",
    "LogEntry",
    "ShardServer",
    "entry_offset",
    "make_samples",
    "replace_entry",
    "tar_bytes",
    "truncate",
    "write_shards",
]
