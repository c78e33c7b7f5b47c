"""ImageFolderFactory: an archive of images (``<split>/<class>/<image>``) retrieved over HTTP into
a storage once, unpacked once, and read through the Go core as datago dataset iterators."""

from __future__ import annotations

import logging
import os
import posixpath
import tarfile
import zipfile
from collections.abc import Iterator, Mapping
from typing import IO, Any

from ..datago_iterator import DatagoDatasetIterator
from ..dataset.factory import BaseDatasetFactory
from ..dataset.meta import IteratorMeta
from ..exception import MaliciousFilePathError, ResourceNotFoundError
from ..io.resource_definition import ResourceDefinition
from ..io.resources import StreamedResource
from ..io.retriever import Retriever, RetrieverFactory
from ..io.storage_connectors import StorageConnector

logger = logging.getLogger("datago.datastack")

_DONE = ".complete"


def _members(fileobj: IO[bytes]) -> Iterator[tuple[str, IO[bytes]]]:
    """(path, stream) of every regular file of a tar (any compression) or zip archive."""
    if zipfile.is_zipfile(fileobj):
        fileobj.seek(0)
        with zipfile.ZipFile(fileobj) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    with zf.open(info) as f:
                        yield info.filename, f
        return
    fileobj.seek(0)
    with tarfile.open(fileobj=fileobj, mode="r:*") as tf:
        for member in tf:
            if member.isfile():
                f = tf.extractfile(member)
                if f is not None:
                    yield member.name, f
            elif not member.isdir():
                logger.warning("archive member %s is not a regular file: skipped", member.name)


class ImageFolderFactory(BaseDatasetFactory):
    """A dataset of images shipped as one tar or zip archive laid out ``<split>/<class>/<image>``.

    ``get_dataset_iterator(config={"split": "train"})`` retrieves the archive into the storage
    (``<name>/raw/...``, checksum-verified, once), unpacks it once (``<name>/preprocessed/...``)
    and returns a :class:`DatagoDatasetIterator` over the split's folder: ``it[i]`` ->
    ``(image (H, W, C) uint8, target, tag)``, decoded by the Go core with ``image_config``.

    Args:
        storage_connector: a :class:`FileStorageConnector` (the split is read from its folder).
        name: the dataset's name (its folder in the storage).
        resource: the archive: identifier in storage, URL and MD5.
        image_config: datago's ``image_config`` (crop_and_resize, default_image_size, ...).
        retriever: how to fetch the archive (default: an HTTP retriever over the storage).
        **client_config: other top-level datago config keys (``num_threads``, ...).

    Raises (from get_dataset_iterator):
        ResourceNotFoundError: the split is not a folder of the archive (names the splits there).
        DatasetFileCorruptError: the archive's MD5 does not match (after the retries).
        MaliciousFilePathError: an archive member would leave the storage.
        TypeError: the storage connector has no folder (``get_path``).
    """

    def __init__(
        self,
        storage_connector: StorageConnector,
        name: str,
        resource: ResourceDefinition,
        image_config: Mapping[str, Any] | None = None,
        retriever: Retriever | None = None,
        **client_config: Any,
    ) -> None:
        super().__init__(storage_connector)
        self.name = name
        self.resource = resource
        self.image_config = dict(image_config or {})
        self.retriever = retriever or RetrieverFactory.get_http_retriever(storage_connector)
        self.client_config = client_config
        self.preprocessed_path = posixpath.join(name, "preprocessed")

    def check_exists(self) -> bool:
        """Whether the archive was unpacked completely."""
        return self.storage_connector.has_resource(posixpath.join(self.preprocessed_path, _DONE))  # type: ignore[union-attr]

    def _prepare(self) -> None:
        storage = self.storage_connector
        assert storage is not None
        self.retriever.retrieve([self.resource])
        with storage.get_resource(self.resource.identifier) as archive:
            n = 0
            for path, stream in _members(archive):
                rel = posixpath.normpath(path)
                if rel.startswith("../") or rel == ".." or posixpath.isabs(rel):
                    raise MaliciousFilePathError(
                        f"archive member {path!r} of {self.resource.source} leaves the dataset"
                    )
                storage.set_resource(posixpath.join(self.preprocessed_path, rel), StreamedResource(rel, stream))
                n += 1
        storage.set_resource(posixpath.join(self.preprocessed_path, _DONE), StreamedResource(_DONE, _Empty()))
        logger.info("unpacked %d files of %s into %s", n, self.resource.identifier, self.preprocessed_path)

    def get_dataset_iterator(self, config: dict[str, Any] | None = None) -> tuple[DatagoDatasetIterator, IteratorMeta]:
        config = dict(config or {})
        split = str(config.pop("split", "train"))
        get_path = getattr(self.storage_connector, "get_path", None)
        if get_path is None:
            raise TypeError("ImageFolderFactory needs a storage connector with folders (FileStorageConnector)")
        if not self.check_exists():
            self._prepare()

        root = get_path(self.preprocessed_path)
        folder = get_path(posixpath.join(self.preprocessed_path, split))
        if not os.path.isdir(folder):
            splits = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
            raise ResourceNotFoundError(f"split {split!r} is not defined for {self.name} (splits: {splits})")
        client = {
            "source_type": "file",
            "source_config": {"root_path": folder},
            "image_config": self.image_config,
            **self.client_config,
            **config,
        }
        return DatagoDatasetIterator(client), IteratorMeta(sample_pos=0, target_pos=1, tag_pos=2)


class _Empty:
    """An empty binary stream (the completion marker)."""

    def seek(self, *_: Any) -> int:
        return 0

    def read(self, *_: Any) -> bytes:
        return b""
