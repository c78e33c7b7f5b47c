"""Retrievers: fetch a dataset's files into a storage once, checksum-verified (DataStack's
``data_stack.io.retriever``)."""

from __future__ import annotations

import hashlib
import logging
import tempfile
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import IO, Any

from ..exception import DatasetFileCorruptError
from .resource_definition import ResourceDefinition
from .resources import ResourceFactory
from .storage_connectors import StorageConnector

logger = logging.getLogger("datago.datastack")

_CHUNK = 1 << 20


def calculate_md5(stream: IO[bytes] | Iterable[bytes]) -> str:
    """MD5 (hex) of a binary file object (read from its current position) or of an iterable of chunks."""
    md5 = hashlib.md5(usedforsecurity=False)
    if hasattr(stream, "read"):
        while chunk := stream.read(_CHUNK):  # type: ignore[union-attr]
            md5.update(chunk)
    else:
        for chunk in stream:
            md5.update(chunk)
    return md5.hexdigest()


class RetrieverImplIF(ABC):
    """Retrieves resource definitions into a storage connector."""

    def __init__(self, storage_connector: StorageConnector) -> None:
        self.storage_connector = storage_connector

    @abstractmethod
    def retrieve(self, retrieval_jobs: list[ResourceDefinition]) -> list[str]:
        """Make every job's resource available in the storage; returns their identifiers."""

    def _stored_and_valid(self, job: ResourceDefinition) -> bool:
        if not self.storage_connector.has_resource(job.identifier):
            return False
        with self.storage_connector.get_resource(job.identifier) as resource:
            if calculate_md5(resource) == job.md5_sum:
                return True
        logger.warning("stored resource %s does not match its md5 %s: retrieving it again", job.identifier, job.md5_sum)
        return False


class HTTPRetriever(RetrieverImplIF):
    """Downloads each resource over HTTP(S) into the storage — once.

    A resource already stored with the expected MD5 is not downloaded again. A download whose MD5
    differs is refused (never stored) and fetched again, up to ``max_attempts`` times.

    Args:
        storage_connector: where resources are stored.
        max_attempts: downloads tried per resource before giving up (>= 1).
        timeout: seconds a connection or read may stall.

    Raises (from :meth:`retrieve`):
        DatasetFileCorruptError: every attempt's MD5 differed (names the URL and both sums).
        OSError: the download failed (urllib's ``URLError`` / ``HTTPError`` naming the URL).
    """

    def __init__(self, storage_connector: StorageConnector, max_attempts: int = 3, timeout: float = 30.0) -> None:
        super().__init__(storage_connector)
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, not {max_attempts}")
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.downloads = 0  # downloads made (attempts included), for inspection

    def _download(self, url: str, dest: IO[bytes]) -> str:
        self.downloads += 1
        md5 = hashlib.md5(usedforsecurity=False)
        with urllib.request.urlopen(url, timeout=self.timeout) as response:
            while chunk := response.read(_CHUNK):
                md5.update(chunk)
                dest.write(chunk)
        return md5.hexdigest()

    def retrieve(self, retrieval_jobs: list[ResourceDefinition]) -> list[str]:
        identifiers = []
        for job in retrieval_jobs:
            if self._stored_and_valid(job):
                logger.debug("resource %s is stored: not downloading %s", job.identifier, job.source)
                identifiers.append(job.identifier)
                continue
            got = ""
            for attempt in range(1, self.max_attempts + 1):
                with tempfile.TemporaryFile() as tmp:
                    logger.info("downloading %s (attempt %d)", job.source, attempt)
                    got = self._download(job.source, tmp)
                    if got == job.md5_sum:
                        tmp.seek(0)
                        self.storage_connector.set_resource(
                            job.identifier, ResourceFactory.get_resource(job.identifier, tmp)
                        )
                        break
                    logger.warning("download of %s has md5 %s, expected %s: refused", job.source, got, job.md5_sum)
            else:
                raise DatasetFileCorruptError(
                    f"{job.source}: md5 {got} after {self.max_attempts} downloads, expected {job.md5_sum}"
                )
            identifiers.append(job.identifier)
        return identifiers


class FileRetriever(RetrieverImplIF):
    """Copies local files into the storage (checksum-verified; a stored valid copy is reused).

    Raises (from :meth:`retrieve`):
        DatasetFileCorruptError: a file's MD5 differs from its definition's.
        FileNotFoundError: a source file is missing.
    """

    def retrieve(self, retrieval_jobs: list[ResourceDefinition]) -> list[str]:
        identifiers = []
        for job in retrieval_jobs:
            if not self._stored_and_valid(job):
                with open(job.source, "rb") as fd:
                    got = calculate_md5(fd)
                    if got != job.md5_sum:
                        raise DatasetFileCorruptError(f"{job.source}: md5 {got}, expected {job.md5_sum}")
                    fd.seek(0)
                    self.storage_connector.set_resource(
                        job.identifier, ResourceFactory.get_resource(job.identifier, fd)
                    )
            identifiers.append(job.identifier)
        return identifiers


# DataStack's implementation names
HTTPRetrieverImpl = HTTPRetriever
FileRetrieverImpl = FileRetriever


class Retriever:
    """DataStack's facade over a retriever implementation."""

    def __init__(self, retriever_impl: RetrieverImplIF) -> None:
        self.retriever_impl = retriever_impl

    def retrieve(self, retrieval_jobs: list[ResourceDefinition]) -> list[str]:
        """See :meth:`RetrieverImplIF.retrieve`."""
        return self.retriever_impl.retrieve(retrieval_jobs)


class RetrieverFactory:
    """DataStack's factory for retrievers."""

    @classmethod
    def get_http_retriever(cls, storage_connector: StorageConnector, **kwargs: Any) -> Retriever:
        """A :class:`Retriever` over an :class:`HTTPRetriever` (kwargs: ``max_attempts``, ``timeout``)."""
        return Retriever(HTTPRetriever(storage_connector, **kwargs))

    @classmethod
    def get_file_retriever(cls, storage_connector: StorageConnector) -> Retriever:
        """A :class:`Retriever` over a :class:`FileRetriever`."""
        return Retriever(FileRetriever(storage_connector))
