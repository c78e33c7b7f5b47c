"""Meta information of datasets and iterators (DataStack's ``data_stack.dataset.meta``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass
class IteratorMeta:
    """Positions of the sample, target and tag in an iterator's tuples."""

    sample_pos: int = 0
    target_pos: int = 1
    tag_pos: int = 2


class DatasetMetaIF(ABC):
    """Identifier, name and tag of a dataset, and its tuple positions."""

    @property
    @abstractmethod
    def identifier(self) -> str | None: ...

    @property
    @abstractmethod
    def dataset_name(self) -> str | None: ...

    @property
    @abstractmethod
    def dataset_tag(self) -> str | None: ...

    @property
    @abstractmethod
    def sample_pos(self) -> int: ...

    @property
    @abstractmethod
    def target_pos(self) -> int: ...

    @property
    @abstractmethod
    def tag_pos(self) -> int: ...


class DatasetMeta(DatasetMetaIF):
    """A plain :class:`DatasetMetaIF`."""

    def __init__(
        self,
        iterator_meta: IteratorMeta | None = None,
        identifier: str | None = None,
        dataset_name: str | None = None,
        dataset_tag: str | None = None,
    ) -> None:
        self._iterator_meta = iterator_meta or IteratorMeta()
        self._identifier, self._dataset_name, self._dataset_tag = identifier, dataset_name, dataset_tag

    @property
    def identifier(self) -> str | None:
        return self._identifier

    @property
    def dataset_name(self) -> str | None:
        return self._dataset_name

    @property
    def dataset_tag(self) -> str | None:
        return self._dataset_tag

    @property
    def sample_pos(self) -> int:
        return self._iterator_meta.sample_pos

    @property
    def target_pos(self) -> int:
        return self._iterator_meta.target_pos

    @property
    def tag_pos(self) -> int:
        return self._iterator_meta.tag_pos


class MetaFactory:
    """DataStack's factory for meta objects."""

    @staticmethod
    def get_iterator_meta(sample_pos: int, target_pos: int, tag_pos: int) -> IteratorMeta:
        return IteratorMeta(sample_pos=sample_pos, target_pos=target_pos, tag_pos=tag_pos)

    @staticmethod
    def get_dataset_meta(
        identifier: str | None = None,
        dataset_name: str | None = None,
        dataset_tag: str | None = None,
        iterator_meta: IteratorMeta | None = None,
    ) -> DatasetMetaIF:
        return DatasetMeta(iterator_meta, identifier, dataset_name, dataset_tag)
