"""datago's exceptions: one base class, :class:`DatagoError`, and subclasses that also inherit the
builtin exception users caught before (as python-soundfile does), so ``except ValueError`` keeps
working and ``except datago.DatagoError`` catches everything the library raises.

The Go core reports an error as a ``DATAGO_ERR_*`` code next to its message (``datago_error`` in
``datago.h``); :data:`KIND_TO_ERROR` maps each code to its class.
"""

from __future__ import annotations


class DatagoError(Exception):
    """Base class of every error datago raises."""


class DatagoRuntimeError(DatagoError, RuntimeError):
    """An internal failure of the core (``DATAGO_ERR_RUNTIME``)."""


class ConfigError(DatagoError, ValueError):
    """A bad config key or value, or a bad argument (``DATAGO_ERR_VALUE``); names the key."""


class NotFoundError(DatagoError, FileNotFoundError):
    """A file, shard or URL that does not exist (``DATAGO_ERR_NOT_FOUND``); names the path or URL."""


class DatagoOSError(DatagoError, OSError):
    """An I/O or network failure (``DATAGO_ERR_OS``); names the path or URL."""


class DatagoPermissionError(DatagoError, PermissionError):
    """Access refused (``DATAGO_ERR_PERMISSION``): HTTP 401/403, S3 ``AccessDenied``; names the URL.

    A :class:`PermissionError`, hence an :class:`OSError`.
    """


class ClosedError(DatagoError, RuntimeError, ValueError):
    """Use of a closed client or a freed handle (``DATAGO_ERR_CLOSED``).

    Both a RuntimeError (as the Python binding raised it) and a ValueError (as the core did).
    """


class ForkError(DatagoError, RuntimeError):
    """Use of a datago client after fork(): the Go runtime does not survive it."""


class SampleTimeoutError(DatagoError, TimeoutError):
    """No sample arrived within the timeout given to ``get_sample`` (the stream goes on)."""


class AbiVersionError(DatagoError, ImportError):
    """libdatago.so was built for another version of the C ABI than the binding's datago.h."""


#: DATAGO_ERR_* code -> exception class.
KIND_TO_ERROR: dict[int, type[DatagoError]] = {
    1: DatagoRuntimeError,
    2: ConfigError,
    3: NotFoundError,
    4: DatagoOSError,
    5: ClosedError,
    6: DatagoPermissionError,
}
