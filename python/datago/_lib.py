"""Loading of libdatago.so through cffi (ABI mode), and the fork guard.

The cdef is read from the hand-written C header (``datago.h``, the block between ``BEGIN CDEF`` and
``END CDEF``), so the Python binding and the C contract cannot drift apart. The library is opened
lazily, on first use: importing :mod:`datago` does not start the Go runtime, so a parent process may
import datago and fork DataLoader workers that each create their own clients. Opening it checks
that the library implements the header's ``DATAGO_ABI_VERSION``, asks the core for its log records
(see :mod:`datago._logs`) and starts the thread that forwards them to the ``datago`` logger.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

import cffi

from .errors import KIND_TO_ERROR, AbiVersionError, DatagoRuntimeError, ForkError

_HERE = Path(__file__).resolve().parent
_HEADER_CANDIDATES = (_HERE / "datago.h", _HERE.parent.parent / "go" / "capi" / "datago.h")
_LIB_CANDIDATES = (_HERE / "libdatago.so",)

ffi = cffi.FFI()
_lock = threading.Lock()
_lib: Any = None
_loaded_pid: int | None = None


def _cdef_source() -> str:
    for path in _HEADER_CANDIDATES:
        if path.is_file():
            text = path.read_text()
            match = re.search(r"/\* BEGIN CDEF \*/(.*)/\* END CDEF \*/", text, re.S)
            if match is None:
                raise ImportError(f"{path} has no BEGIN CDEF / END CDEF block")
            return match.group(1)
    raise ImportError("datago.h not found next to the package; run ./build.sh (or pip install .) first")


def library_path() -> Path:
    """Path of libdatago.so: ``$DATAGO_LIBRARY`` or the copy inside the package.

    Raises:
        ImportError: when the library has not been built.
    """
    env = os.environ.get("DATAGO_LIBRARY")
    if env:
        return Path(env)
    for path in _LIB_CANDIDATES:
        if path.is_file():
            return path
    raise ImportError("libdatago.so not found; run ./build.sh (or pip install .) first")


ffi.cdef(_cdef_source())


def lib() -> Any:
    """The opened library (opened on first call).

    Raises:
        ForkError: when the library was opened by a parent process before fork().
        ImportError: when the library is missing.
        AbiVersionError: (an ImportError) when the library implements another DATAGO_ABI_VERSION
            than the header the binding read.
    """
    global _lib, _loaded_pid
    if _lib is not None:
        if _loaded_pid != os.getpid():
            raise ForkError(
                "datago's Go runtime was started in a parent process and does not survive fork(); "
                "create clients in the child only (e.g. in a DataLoader worker_init_fn), use the "
                "'spawn' or 'forkserver' start method, or use datago before forking only in the child"
            )
        return _lib
    with _lock:
        if _lib is None:
            path = library_path()
            opened = ffi.dlopen(str(path))
            check_abi(opened, path)
            from . import _logs

            _logs.start(opened)
            _lib = opened
            _loaded_pid = os.getpid()
    return _lib


def check_abi(opened: Any, path: Path | str) -> None:
    """Check that an opened library implements the header's DATAGO_ABI_VERSION.

    Raises:
        AbiVersionError: the library is older than the ABI check, or implements another version.
    """
    want = int(opened.DATAGO_ABI_VERSION)
    try:
        got = int(opened.datago_abi_version())
    except AttributeError:  # a library built before datago_abi_version existed
        got = 1
    if got != want:
        raise AbiVersionError(
            f"{path} implements C ABI version {got}, but this datago package needs version {want} "
            "(datago.h); rebuild the library (./build.sh or pip install .)"
        )


def check_not_forked(owner_pid: int) -> None:
    """Raise ForkError when called in a process other than ``owner_pid``."""
    if os.getpid() != owner_pid:
        raise ForkError(
            f"this DatagoClient was created in process {owner_pid} and cannot be used after fork() "
            f"(pid {os.getpid()}): the Go runtime does not survive fork(); create the client in the "
            "child process"
        )


def take_string(ptr: Any) -> str:
    """Copy a malloc'd C string returned by the library and free it."""
    if ptr == ffi.NULL:
        return ""
    try:
        return ffi.string(ptr).decode("utf-8", "replace")
    finally:
        _lib.datago_free_string(ptr)


def new_error() -> Any:
    """A zeroed ``datago_error`` for a call that can fail."""
    return ffi.new("datago_error *")


def raise_error(err: Any) -> None:
    """Raise the exception a ``datago_error`` describes (its message freed).

    Raises:
        DatagoError: the subclass of the error's kind (ConfigError, NotFoundError, ...).
    """
    message = take_string(err.message) or "unknown error"
    err.message = ffi.NULL
    raise KIND_TO_ERROR.get(int(err.kind), DatagoRuntimeError)(message)
