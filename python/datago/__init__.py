"""datago: a fast data loader for image training — a Go core (libvips) behind a cffi binding.

Importing the package does not load the native library; the first :class:`DatagoClient` does.
"""

from __future__ import annotations

import logging

from .batch import Batch
from .client import DatagoClient, live_samples
from .dataset import DatagoIterDataset
from .errors import (
    AbiVersionError,
    ClosedError,
    ConfigError,
    DatagoError,
    DatagoOSError,
    DatagoPermissionError,
    DatagoRuntimeError,
    ForkError,
    NotFoundError,
    SampleTimeoutError,
)
from .map_dataset import MapDataset, SampleSkippedError
from .raw_types import ImagePayload
from .sample import ImageInfo, Sample
from .state import merge_state_dicts

__all__ = [
    "AbiVersionError",
    "Batch",
    "ClosedError",
    "ConfigError",
    "DatagoClient",
    "DatagoError",
    "DatagoIterDataset",
    "DatagoOSError",
    "DatagoPermissionError",
    "DatagoRuntimeError",
    "ForkError",
    "ImageInfo",
    "ImagePayload",
    "MapDataset",
    "NotFoundError",
    "Sample",
    "SampleSkippedError",
    "SampleTimeoutError",
    "initialize_logging",
    "live_samples",
    "merge_state_dicts",
    "version",
]

#: The package's version (the distribution ``datago-vips``); :func:`version` gives the loaded core's.
__version__ = "0.1.0"

logger = logging.getLogger("datago")


def initialize_logging(log_level: str | None = None, *, level: str | None = None) -> bool:
    """Set the log level of the Go core and of the ``datago`` Python logger.

    The core's records (e.g. a skipped corrupt image, with its path) are forwarded to the
    ``datago`` logger; attach a handler to it (or to the root logger) to see them.

    Args:
        log_level: "trace", "debug", "info", "warn", "error" or "off" (any case; datago's
            keyword). None takes the environment's level: ``DATAGO_LOG``, else ``RUST_LOG``
            (env_logger's syntax, as datago reads it), else "warn".
        level: the same, under this package's earlier keyword.

    Returns:
        True: the level was applied (datago returns False when its logger was already set up;
        this one can change the level at any time, so it always applies it).

    Raises:
        ValueError: an unknown level, or ``log_level`` and ``level`` disagree.
    """
    from . import _lib
    from .compat import env_log_level

    if log_level is not None and level is not None and log_level.lower() != level.lower():
        raise ValueError(f"initialize_logging: log_level={log_level!r} and level={level!r} disagree")
    name = log_level if log_level is not None else level
    if name is None:
        name = env_log_level() or "warn"
    if not isinstance(name, str) or _lib.lib().datago_set_log_level(name.encode()) != 0:
        raise ValueError(f"unknown log level {name!r} (trace, debug, info, warn, error, off)")
    logger.setLevel(_py_level(name))
    return True


def _py_level(name: str) -> int | str:
    return {"off": logging.CRITICAL + 1, "warn": logging.WARNING, "warning": logging.WARNING,
            "trace": logging.DEBUG, "none": logging.CRITICAL + 1}.get(name.lower(), name.upper())


def version() -> str:
    """Version of the loaded libdatago.so."""
    from . import _lib

    return _lib.ffi.string(_lib.lib().datago_version()).decode()


def _env_logger_level() -> None:
    from .compat import env_log_level

    name = env_log_level()  # DATAGO_LOG, else RUST_LOG (datago's variable)
    if name:
        logger.setLevel(_py_level(name))


_env_logger_level()
