"""datago: a fast data loader for image training — a Go core (libvips) behind a cffi binding.

Importing the package does not load the native library; the first :class:`DatagoClient` does.
"""

from __future__ import annotations

import logging
import os

from .batch import Batch
from .client import DatagoClient, live_samples
from .errors import (
    AbiVersionError,
    ClosedError,
    ConfigError,
    DatagoError,
    DatagoOSError,
    DatagoRuntimeError,
    ForkError,
    NotFoundError,
    SampleTimeoutError,
)
from .map_dataset import MapDataset, SampleSkippedError
from .sample import ImageInfo, Sample
from .state import merge_state_dicts

__all__ = [
    "AbiVersionError",
    "Batch",
    "ClosedError",
    "ConfigError",
    "DatagoClient",
    "DatagoError",
    "DatagoOSError",
    "DatagoRuntimeError",
    "ForkError",
    "ImageInfo",
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

logger = logging.getLogger("datago")


def initialize_logging(level: str = "warn") -> None:
    """Set the log level of the Go core and of the ``datago`` Python logger.

    The core's records (e.g. a skipped corrupt image, with its path) are forwarded to the
    ``datago`` logger; attach a handler to it (or to the root logger) to see them.

    Args:
        level: "debug", "info", "warn", "error" or "off". The ``DATAGO_LOG`` environment variable
            sets the core's level at load time.

    Raises:
        ValueError: an unknown level.
    """
    from . import _lib

    if _lib.lib().datago_set_log_level(level.encode()) != 0:
        raise ValueError(f"unknown log level {level!r} (debug, info, warn, error, off)")
    py_level = {"off": logging.CRITICAL + 1, "warn": logging.WARNING}.get(level.lower())
    logger.setLevel(py_level if py_level is not None else level.upper())


def version() -> str:
    """Version of the loaded libdatago.so."""
    from . import _lib

    return _lib.ffi.string(_lib.lib().datago_version()).decode()


if os.environ.get("DATAGO_LOG"):
    logger.setLevel(
        {"off": logging.CRITICAL + 1, "warn": logging.WARNING}.get(
            os.environ["DATAGO_LOG"].lower(), os.environ["DATAGO_LOG"].upper()
        )
    )
