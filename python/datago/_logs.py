"""Forwarding of the Go core's log records to the ``datago`` Python logger.

When the library is opened, the binding calls ``datago_capture_logs(1)``: the core then queues its
records (bounded; records that do not fit are counted) instead of writing them to stderr. They are
drained by :func:`drain` — after ``get_sample`` reaches the end of a stream or fails, in ``stats``,
and every :data:`POLL_INTERVAL_S` seconds by a daemon thread — and emitted on the ``datago`` logger
with the core's level, message and attributes (``key=value``, e.g. the path of a skipped sample).
Go never calls into Python: every record crosses the C ABI on a Python thread.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
from typing import Any

logger = logging.getLogger("datago")

#: Seconds between two drains by the daemon thread.
POLL_INTERVAL_S = 0.2

_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING, "ERROR": logging.ERROR}
_drain_lock = threading.Lock()  # records keep their order across the threads that drain
_lib: Any = None
_pid: int | None = None


def _level(name: str) -> int:
    if name in _LEVELS:
        return _LEVELS[name]
    base, sign, delta = name.partition("+") if "+" in name else name.partition("-")
    try:
        return _LEVELS.get(base, logging.WARNING) + (int(delta) if sign == "+" else -int(delta))
    except ValueError:
        return logging.WARNING


def _text(value: Any) -> str:
    if isinstance(value, str) and (value == "" or any(c in value for c in ' ="')):
        return json.dumps(value)
    return str(value)


def _emit(rec: dict[str, Any]) -> None:
    level = _level(str(rec.get("level", "WARN")))
    if not logger.isEnabledFor(level):
        return
    attrs = rec.get("attrs") or {}
    message = str(rec.get("message", ""))
    if attrs:
        message += " " + " ".join(f"{k}={_text(v)}" for k, v in attrs.items())
    record = logger.makeRecord(logger.name, level, "(datago core)", 0, message, (), None,
                               extra={"datago_attrs": attrs})
    created = rec.get("time")
    if isinstance(created, (int, float)) and created > 0:
        record.created = float(created)
        record.msecs = (record.created - int(record.created)) * 1000
    logger.handle(record)


def drain() -> None:
    """Emit every queued record of the core on the ``datago`` logger (no-op before the library is
    opened, and in a forked child)."""
    lib = _lib
    if lib is None or os.getpid() != _pid:
        return
    with _drain_lock:
        ptr = lib.datago_drain_logs(0)
        if ptr == _ffi().NULL:
            return
        try:
            data = json.loads(_ffi().string(ptr).decode("utf-8", "replace"))
        finally:
            lib.datago_free_string(ptr)
        dropped = int(data.get("dropped", 0))
        if dropped:
            logger.warning("datago: %d log records of the core were dropped (its queue was full)", dropped)
        for rec in data.get("records", []):
            _emit(rec)


def _ffi() -> Any:
    from ._lib import ffi

    return ffi


def _pump(stop: threading.Event) -> None:
    while not stop.wait(POLL_INTERVAL_S):
        try:
            drain()
        except Exception:  # never let the pump die on a bad record; the next drain goes on
            logger.exception("datago: forwarding the core's log records failed")


_stop = threading.Event()


def start(lib: Any) -> None:
    """Capture the core's log records and start the daemon thread that forwards them."""
    global _lib, _pid
    _lib, _pid = lib, os.getpid()
    lib.datago_capture_logs(1)
    threading.Thread(target=_pump, args=(_stop,), name="datago-logs", daemon=True).start()
    atexit.register(drain)
