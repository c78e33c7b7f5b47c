"""Storage connectors: store and load a dataset's binary streams by identifier (DataStack's
``data_stack.io.storage_connectors``)."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

from ..exception import MaliciousFilePathError, ResourceNotFoundError
from .resources import ResourceFactory, StreamedResource

_BINARY = ResourceFactory.SupportedStreamedResourceTypes.STREAMED_BINARY_RESOURCE


class StorageConnector(ABC):
    """Stores :class:`StreamedResource` objects under identifiers and loads them back."""

    @abstractmethod
    def get_resource(
        self, identifier: str, resource_type: ResourceFactory.SupportedStreamedResourceTypes = _BINARY
    ) -> StreamedResource:
        """The stored stream (lazily read: only a file descriptor is opened).

        Raises:
            ResourceNotFoundError: nothing is stored under ``identifier``.
        """

    @abstractmethod
    def set_resource(self, identifier: str, resource: StreamedResource) -> None:
        """Store ``resource``'s bytes under ``identifier`` (replacing what was there)."""

    @abstractmethod
    def has_resource(self, identifier: str) -> bool:
        """Whether something is stored under ``identifier``."""


class FileStorageConnector(StorageConnector):
    """Stores resources as files below ``root_path`` (identifier = relative path).

    Writes go to a temporary file renamed into place, so an interrupted store never leaves a
    partial resource behind.

    Raises:
        MaliciousFilePathError: an identifier outside ``root_path`` (``../``, an absolute path).
    """

    def __init__(self, root_path: str | os.PathLike[str]) -> None:
        self._root_path = os.path.abspath(root_path)

    @property
    def root_path(self) -> str:
        """The storage folder (absolute)."""
        return self._root_path

    def get_resource(
        self, identifier: str, resource_type: ResourceFactory.SupportedStreamedResourceTypes = _BINARY
    ) -> StreamedResource:
        if not self.has_resource(identifier):
            raise ResourceNotFoundError(f"resource {identifier!r} not found in {self.root_path}")
        fd = open(self.get_path(identifier), "rb")
        return ResourceFactory.get_resource(identifier=identifier, file_like_object=fd, resource_type=resource_type)

    def set_resource(self, identifier: str, resource: StreamedResource) -> None:
        full_path = self.get_path(identifier)
        os.makedirs(os.path.dirname(full_path), exist_ok=True)
        tmp = f"{full_path}.part{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                for chunk in resource:
                    f.write(chunk)
            os.replace(tmp, full_path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def has_resource(self, identifier: str) -> bool:
        return os.path.isfile(self.get_path(identifier))

    def get_path(self, identifier: str) -> str:
        """The file that holds ``identifier`` (it may not exist).

        Raises:
            MaliciousFilePathError: the identifier leaves ``root_path``.
        """
        full_path = os.path.realpath(os.path.join(self.root_path, identifier))
        root = os.path.realpath(self.root_path)
        if os.path.commonpath([root, full_path]) != root or full_path == root:
            raise MaliciousFilePathError(f"identifier {identifier!r} leaves the storage root {self.root_path}")
        return full_path


class StorageConnectorFactory:
    """DataStack's factory for connectors."""

    @classmethod
    def get_file_storage_connector(cls, folder_path: str) -> StorageConnector:
        """A :class:`FileStorageConnector` rooted at ``folder_path``."""
        return FileStorageConnector(folder_path)
