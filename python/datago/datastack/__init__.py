"""DataStack's API on datago: storage connectors, retrievers, factories, indexable iterators,
views, splitters and combined iterators — with datago datasets (any folder, shard set or engine
query) as indexable iterators decoded by the Go core.

The submodules mirror DataStack's (``data_stack.io.storage_connectors`` is
``datago.datastack.io.storage_connectors``, and so on); every public name is also here.
:class:`TorchDataset` (``datago.datastack.torch_dataset``) imports torch on first use.
"""

from __future__ import annotations

from typing import Any

from .datago_iterator import DatagoDatasetIterator, folder_label
from .dataset.factory import BaseDatasetFactory, HigherOrderDatasetFactory, InformedDatasetFactory
from .dataset.iterator import (
    CombinedDatasetIterator,
    DatasetIterator,
    DatasetIteratorIF,
    DatasetIteratorView,
    InformedDatasetIterator,
    InformedDatasetIteratorIF,
    InMemoryDatasetIterator,
    SequenceDatasetIterator,
)
from .dataset.meta import DatasetMeta, DatasetMetaIF, IteratorMeta, MetaFactory
from .dataset.splitter import (
    RandomSplitterImpl,
    Splitter,
    SplitterFactory,
    StratifiedSplitterImpl,
    targets_of,
)
from .exception import (
    DatasetFileCorruptError,
    DatasetNotFoundError,
    DatasetOutOfBoundsError,
    MaliciousFilePathError,
    ResourceNotFoundError,
)
from .images.factory import ImageFolderFactory
from .io.resource_definition import ResourceDefinition
from .io.resources import ResourceFactory, StreamedResource, StreamedTextResource
from .io.retriever import FileRetriever, HTTPRetriever, Retriever, RetrieverFactory, calculate_md5
from .io.storage_connectors import FileStorageConnector, StorageConnector, StorageConnectorFactory

__all__ = [
    "BaseDatasetFactory",
    "CombinedDatasetIterator",
    "DatagoDatasetIterator",
    "DatasetFileCorruptError",
    "DatasetIterator",
    "DatasetIteratorIF",
    "DatasetIteratorView",
    "DatasetMeta",
    "DatasetMetaIF",
    "DatasetNotFoundError",
    "DatasetOutOfBoundsError",
    "FileRetriever",
    "FileStorageConnector",
    "HTTPRetriever",
    "HigherOrderDatasetFactory",
    "ImageFolderFactory",
    "InMemoryDatasetIterator",
    "InformedDatasetFactory",
    "InformedDatasetIterator",
    "InformedDatasetIteratorIF",
    "IteratorMeta",
    "MaliciousFilePathError",
    "MetaFactory",
    "RandomSplitterImpl",
    "ResourceDefinition",
    "ResourceFactory",
    "ResourceNotFoundError",
    "Retriever",
    "RetrieverFactory",
    "SequenceDatasetIterator",
    "Splitter",
    "SplitterFactory",
    "StorageConnector",
    "StorageConnectorFactory",
    "StratifiedSplitterImpl",
    "StreamedResource",
    "StreamedTextResource",
    "TorchDataset",
    "calculate_md5",
    "folder_label",
    "targets_of",
]


def __getattr__(name: str) -> Any:
    if name == "TorchDataset":  # imports torch
        from .torch_dataset import TorchDataset

        return TorchDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
