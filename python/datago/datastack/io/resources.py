"""Streamed resources: a dataset file as a binary stream with an identifier (DataStack's
``data_stack.io.resources``)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from enum import Enum
from typing import IO, Any


class StreamedResource:
    """A binary stream (any file-like object) stored under ``identifier``.

    Iterating it yields chunks of ``chunk_size`` bytes from the start; it is a context manager
    and forwards the file methods (``read``, ``seek``, ``tell``, ``readline``, ``close``, ...),
    so libraries that take a file object (tarfile, zipfile, numpy, torch) read it directly.
    """

    def __init__(self, identifier: str, buffer: IO[Any], chunk_size: int = 1 << 20) -> None:
        self._identifier = identifier
        self._buffer = buffer
        self._chunk_size = chunk_size

    @property
    def identifier(self) -> str:
        """The resource's identifier in its storage (a '/'-separated path)."""
        return self._identifier

    @property
    def chunk_size(self) -> int:
        """Bytes per chunk when iterating."""
        return self._chunk_size

    def __iter__(self) -> Iterator[Any]:
        self._buffer.seek(0)
        while chunk := self._buffer.read(self._chunk_size):
            yield chunk

    def __enter__(self) -> StreamedResource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:  # read, seek, tell, readline, fileno, ...
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._buffer, name)

    def close(self) -> None:
        """Close the underlying stream."""
        self._buffer.close()

    @property
    def closed(self) -> bool:
        """Whether the underlying stream is closed."""
        return bool(self._buffer.closed)


class StreamedTextResource(StreamedResource):
    """A :class:`StreamedResource` decoded as text (``encoding``)."""

    def __init__(self, identifier: str, buffer: IO[Any], chunk_size: int = 1 << 20, encoding: str = "utf-8") -> None:
        super().__init__(identifier, io.TextIOWrapper(buffer, encoding=encoding), chunk_size)

    @staticmethod
    def from_streamed_resouce(resource: StreamedResource, encoding: str = "utf-8") -> StreamedTextResource:
        """DataStack's (sic) spelling: wrap a binary resource as text."""
        return StreamedTextResource(resource.identifier, resource._buffer, resource.chunk_size, encoding)


class _ResourceTypes(Enum):
    STREAMED_BINARY_RESOURCE = "STREAMED_BINARY_RESOURCE"
    STREAMED_TEXT_RESOURCE = "STREAMED_TEXT_RESOURCE"


_BINARY = _ResourceTypes.STREAMED_BINARY_RESOURCE


class ResourceFactory:
    """Builds streamed resources (DataStack's factory)."""

    SupportedStreamedResourceTypes = _ResourceTypes

    @staticmethod
    def get_resource(
        identifier: str,
        file_like_object: IO[Any],
        chunk_size: int = 1 << 20,
        resource_type: ResourceFactory.SupportedStreamedResourceTypes = _BINARY,
    ) -> StreamedResource:
        """A resource over ``file_like_object`` (binary, or text when asked)."""
        if resource_type == ResourceFactory.SupportedStreamedResourceTypes.STREAMED_TEXT_RESOURCE:
            return StreamedTextResource(identifier, file_like_object, chunk_size)
        return StreamedResource(identifier, file_like_object, chunk_size)
