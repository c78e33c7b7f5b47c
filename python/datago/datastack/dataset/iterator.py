"""Dataset iterators: indexable datasets (``it[i]`` -> ``(sample, target, tag)``, ``len(it)``) and
the higher-order iterators stacked on them (DataStack's ``data_stack.dataset.iterator``).

Besides DataStack's interface, every iterator has ``get_items(indices)`` (a list of samples; a
datago-backed iterator decodes them in parallel in the Go core, and views and combinations pass
the whole list down) and ``targets`` (every sample's target without loading the samples, or None
when unknown: the splitters then read ``it[i][1]``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

from .meta import DatasetMetaIF


class DatasetIteratorIF(ABC):
    """An indexable dataset: ``len(it)`` samples, ``it[i]`` the i-th (a tuple, by convention
    ``(sample, target, tag)``). Iterating yields ``it[0] ... it[len - 1]``."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, index: int) -> Any: ...

    @property
    @abstractmethod
    def underlying_iterators(self) -> list[DatasetIteratorIF]:
        """The iterators this one is stacked on (none for a base iterator)."""

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self)):
            yield self[i]

    def get_items(self, indices: Sequence[int]) -> list[Any]:
        """``[self[i] for i in indices]``; datago-backed iterators decode the list in parallel."""
        return [self[i] for i in indices]

    @property
    def targets(self) -> list[Any] | None:
        """Every sample's target, in index order, when known without loading samples; else None."""
        return None


def _check(index: int, n: int) -> int:
    if index < 0:
        index += n
    if not 0 <= index < n:
        raise IndexError(f"index {index} out of range for a dataset of {n} samples")
    return index


class DatasetIterator(DatasetIteratorIF):
    """A base iterator (stacked on nothing)."""

    @property
    def underlying_iterators(self) -> list[DatasetIteratorIF]:
        return []


class InformedDatasetIteratorIF(DatasetIteratorIF):
    """An iterator that carries its dataset's meta information."""

    @property
    @abstractmethod
    def dataset_meta(self) -> DatasetMetaIF: ...


class InformedDatasetIterator(InformedDatasetIteratorIF):
    """Wraps an iterator with a :class:`DatasetMetaIF`."""

    def __init__(self, dataset_iterator: DatasetIteratorIF, dataset_meta: DatasetMetaIF) -> None:
        self._dataset_iterator = dataset_iterator
        self._dataset_meta = dataset_meta

    def __len__(self) -> int:
        return len(self._dataset_iterator)

    def __getitem__(self, index: int) -> Any:
        return self._dataset_iterator[index]

    def get_items(self, indices: Sequence[int]) -> list[Any]:
        return self._dataset_iterator.get_items(indices)

    @property
    def targets(self) -> list[Any] | None:
        return self._dataset_iterator.targets

    @property
    def underlying_iterators(self) -> list[DatasetIteratorIF]:
        return self._dataset_iterator.underlying_iterators

    @property
    def dataset_meta(self) -> DatasetMetaIF:
        return self._dataset_meta


class SequenceDatasetIterator(DatasetIterator):
    """Sample i is ``tuple(s[i] for s in dataset_sequences)`` (equal-length sequences)."""

    def __init__(self, dataset_sequences: list[Sequence[Any]]) -> None:
        self._dataset_sequences = dataset_sequences

    def __len__(self) -> int:
        return len(self._dataset_sequences[0])

    def __getitem__(self, index: int) -> Any:
        index = _check(index, len(self))
        return tuple(s[index] for s in self._dataset_sequences)

    @property
    def targets(self) -> list[Any] | None:
        return list(self._dataset_sequences[1]) if len(self._dataset_sequences) > 1 else None


class DatasetIteratorView(DatasetIterator):
    """A view on ``dataset_iterator``: sample i is ``dataset_iterator[indices[i]]`` (a split, a
    subset, a reordering; indices may repeat)."""

    def __init__(
        self, dataset_iterator: DatasetIteratorIF, indices: Sequence[int], view_tags: dict[str, Any] | None = None
    ) -> None:
        n = len(dataset_iterator)
        self._dataset_iterator = dataset_iterator
        self._indices = [_check(int(i), n) for i in indices]
        self._view_tags = view_tags or {}

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index: int) -> Any:
        return self._dataset_iterator[self._indices[_check(index, len(self))]]

    def get_items(self, indices: Sequence[int]) -> list[Any]:
        n = len(self)
        return self._dataset_iterator.get_items([self._indices[_check(int(i), n)] for i in indices])

    @property
    def targets(self) -> list[Any] | None:
        base = self._dataset_iterator.targets
        return None if base is None else [base[i] for i in self._indices]

    @property
    def underlying_iterators(self) -> list[DatasetIteratorIF]:
        return [self._dataset_iterator]

    @property
    def indices(self) -> list[int]:
        """Positions in the underlying iterator."""
        return self._indices

    @property
    def view_tags(self) -> dict[str, Any]:
        """Free-form tags of the view (e.g. ``{"split": "val"}``)."""
        return self._view_tags


class CombinedDatasetIterator(DatasetIterator):
    """The concatenation of ``iterators``: their samples one after the other."""

    def __init__(self, iterators: list[DatasetIteratorIF]) -> None:
        self._iterators = list(iterators)

    def __len__(self) -> int:
        return sum(len(it) for it in self._iterators)

    def _locate(self, index: int) -> tuple[int, int]:
        index = _check(index, len(self))
        for k, it in enumerate(self._iterators):
            if index < len(it):
                return k, index
            index -= len(it)
        raise IndexError(index)  # unreachable: _check bounds it

    def __getitem__(self, index: int) -> Any:
        k, i = self._locate(index)
        return self._iterators[k][i]

    def get_items(self, indices: Sequence[int]) -> list[Any]:
        located = [self._locate(int(i)) for i in indices]
        out: list[Any] = [None] * len(located)
        for k, it in enumerate(self._iterators):
            mine = [pos for pos, (kk, _) in enumerate(located) if kk == k]
            if mine:
                for pos, item in zip(mine, it.get_items([located[pos][1] for pos in mine]), strict=True):
                    out[pos] = item
        return out

    @property
    def targets(self) -> list[Any] | None:
        parts = [it.targets for it in self._iterators]
        if any(p is None for p in parts):
            return None
        return [t for p in parts for t in p]  # type: ignore[union-attr]

    @property
    def underlying_iterators(self) -> list[DatasetIteratorIF]:
        return self._iterators


class InMemoryDatasetIterator(DatasetIterator):
    """Loads every sample of ``dataset_iterator`` into memory once (in one ``get_items`` call)."""

    def __init__(self, dataset_iterator: DatasetIteratorIF) -> None:
        self._dataset_iterator = dataset_iterator
        self._samples = dataset_iterator.get_items(range(len(dataset_iterator)))

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> Any:
        return self._samples[_check(index, len(self))]

    @property
    def targets(self) -> list[Any] | None:
        return self._dataset_iterator.targets

    @property
    def underlying_iterators(self) -> list[DatasetIteratorIF]:
        return [self._dataset_iterator]
