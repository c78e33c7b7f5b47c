"""Server: pages computed ahead (:class:`Prefetcher`) and the JSON encoding of answers."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

try:  # optional, several times faster for large pages
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None


def dumps(payload: Any) -> bytes:
    """Compact JSON bytes of ``payload`` (orjson when installed)."""
    if _orjson is not None:
        return _orjson.dumps(payload)
    return json.dumps(payload, separators=(",", ":")).encode("ascii")


class Prefetcher:
    """Pages computed ahead: after answering a page, the server computes the next one in a worker
    thread while the client takes the current one (the database work overlaps the client's).

    A computed page is used once, only for the same request (path, parameters, body, base URL,
    cursor), within ``ttl`` seconds, and only if this process wrote nothing in between (see
    :attr:`Engine.write_generation`); writes by other processes can make it up to ``ttl`` seconds
    old.
    """

    def __init__(self, ttl: float = 10.0, max_entries: int = 16, workers: int = 2) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="datago-prefetch")
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[Any, ...], tuple[float, int, Future[Any]]] = OrderedDict()

    def take(self, key: tuple[Any, ...], generation: int) -> Any:
        """The prefetched result for ``key`` (waiting for it if still running), or None."""
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is None:
            return None
        deadline, gen, fut = entry
        if gen != generation or time.monotonic() > deadline:
            fut.cancel()
            return None
        try:
            return fut.result(timeout=300)
        except Exception:  # computed again by the caller, which reports errors
            return None

    def schedule(self, key: tuple[Any, ...], generation: int, fn: Callable[[], Any]) -> None:
        """Start computing ``fn()`` for ``key`` in a worker thread."""
        with self._lock:
            if key in self._entries:
                return
            try:
                fut = self._pool.submit(fn)
            except RuntimeError:  # shut down
                return
            self._entries[key] = (time.monotonic() + self.ttl, generation, fut)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)[1][2].cancel()

    def shutdown(self) -> None:
        """Stop the worker threads (pending computations are cancelled)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
