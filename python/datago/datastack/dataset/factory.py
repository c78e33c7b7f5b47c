"""Dataset factories: tie storage, retrieval and preparation to an iterator (DataStack's
``data_stack.dataset.factory``)."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import Any

from ..io.storage_connectors import StorageConnector
from .iterator import (
    CombinedDatasetIterator,
    DatasetIteratorIF,
    DatasetIteratorView,
    InformedDatasetIterator,
    InformedDatasetIteratorIF,
    InMemoryDatasetIterator,
)
from .meta import DatasetMetaIF, IteratorMeta


class BaseDatasetFactory(ABC):
    """Retrieves, prepares, stores and loads a dataset through ``storage_connector``."""

    def __init__(self, storage_connector: StorageConnector | None = None) -> None:
        self.storage_connector = storage_connector

    @abstractmethod
    def get_dataset_iterator(self, config: dict[str, Any] | None = None) -> tuple[DatasetIteratorIF, IteratorMeta]:
        """The iterator of the dataset (e.g. ``config={"split": "train"}``) and its tuple layout."""


class HigherOrderDatasetFactory:
    """Builds iterators stacked on others."""

    @staticmethod
    def get_combined_dataset_iterator(iterators: list[DatasetIteratorIF]) -> DatasetIteratorIF:
        return CombinedDatasetIterator(iterators)

    @staticmethod
    def get_dataset_iterator_view(
        iterator: DatasetIteratorIF, indices: list[int], view_tags: dict[str, Any] | None = None
    ) -> DatasetIteratorIF:
        return DatasetIteratorView(iterator, indices, view_tags)


class InformedDatasetFactory:
    """Builds iterators that carry meta information."""

    @staticmethod
    def get_dataset_iterator(iterator: DatasetIteratorIF, meta: DatasetMetaIF) -> InformedDatasetIteratorIF:
        return InformedDatasetIterator(iterator, meta)

    @staticmethod
    def get_combined_dataset_iterator(
        iterators: list[DatasetIteratorIF], meta: DatasetMetaIF
    ) -> InformedDatasetIteratorIF:
        return InformedDatasetIterator(CombinedDatasetIterator(iterators), meta)

    @staticmethod
    def get_dataset_iterator_view(
        iterator: DatasetIteratorIF, meta: DatasetMetaIF, indices: list[int], view_tags: dict[str, Any] | None = None
    ) -> InformedDatasetIteratorIF:
        return InformedDatasetIterator(DatasetIteratorView(iterator, indices, view_tags), meta)

    @staticmethod
    def get_in_memory_dataset_iterator(iterator: DatasetIteratorIF, meta: DatasetMetaIF) -> InformedDatasetIteratorIF:
        return InformedDatasetIterator(InMemoryDatasetIterator(iterator), meta)

    @staticmethod
    def get_shuffled_dataset_iterator(
        iterator: DatasetIteratorIF, meta: DatasetMetaIF, seed: int
    ) -> InformedDatasetIteratorIF:
        indices = list(range(len(iterator)))
        random.Random(seed).shuffle(indices)
        return InformedDatasetFactory.get_dataset_iterator_view(iterator, meta, indices)
