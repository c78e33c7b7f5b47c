"""DataStack's exceptions (same names as ``data_stack.exception``)."""

from __future__ import annotations


class DatasetNotFoundError(Exception):
    """A dataset could not be found."""


class DatasetOutOfBoundsError(IndexError):
    """An index >= len(dataset) was used."""


class DatasetFileCorruptError(Exception):
    """A file's checksum does not match the expected one (a corrupt or tampered download)."""


class MaliciousFilePathError(Exception):
    """An identifier or archive member would leave the storage root (e.g. ``../``)."""


class ResourceNotFoundError(Exception):
    """No resource is stored under an identifier (or a split is not defined)."""
