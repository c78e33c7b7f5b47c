"""Seeded random and stratified splitters (DataStack's ``data_stack.dataset.splitter``).

A splitter cuts an iterator into :class:`DatasetIteratorView` objects whose sizes follow
``ratios``. Splits are disjoint and complete (every index in exactly one split), and a function of
(seed, len, targets) only: the same seed gives the same split, call after call.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from .iterator import DatasetIteratorIF, DatasetIteratorView


def _check_ratios(ratios: Sequence[float]) -> list[float]:
    r = [float(x) for x in ratios]
    if not r or any(x < 0 for x in r) or sum(r) <= 0:
        raise ValueError(f"ratios must be non-negative and not all zero, got {list(ratios)}")
    return r


def _sizes(n: int, ratios: list[float]) -> list[int]:
    """Split n into len(ratios) sizes proportional to ratios (largest remainder; sums to n)."""
    total = sum(ratios)
    exact = [n * r / total for r in ratios]
    sizes = [int(e) for e in exact]
    order = sorted(range(len(ratios)), key=lambda k: (-(exact[k] - sizes[k]), k))
    for k in order[: n - sum(sizes)]:
        sizes[k] += 1
    return sizes


def targets_of(dataset_iterator: DatasetIteratorIF, target_pos: int = 1) -> list[Any]:
    """Every sample's target: ``dataset_iterator.targets`` when known (no sample is loaded), else
    ``it[i][target_pos]`` for every i (loads every sample)."""
    known = dataset_iterator.targets
    if known is not None:
        return list(known)
    return [sample[target_pos] for sample in dataset_iterator]


class SplitterIF(ABC):
    """Splits an iterator into views."""

    @abstractmethod
    def split(self, dataset_iterator: DatasetIteratorIF) -> list[DatasetIteratorView]: ...

    @abstractmethod
    def get_indices(self, dataset_iterator: DatasetIteratorIF) -> list[list[int]]: ...


class RandomSplitterImpl(SplitterIF):
    """Shuffles the indices with ``random.Random(seed)`` and cuts them by ``ratios``.

    Raises:
        ValueError: negative ratios, or all zero.
    """

    def __init__(self, ratios: Sequence[float], seed: int = 1) -> None:
        self.ratios = _check_ratios(ratios)
        self.seed = seed

    def get_indices(self, dataset_iterator: DatasetIteratorIF) -> list[list[int]]:
        indices = list(range(len(dataset_iterator)))
        random.Random(self.seed).shuffle(indices)
        out, lo = [], 0
        for size in _sizes(len(indices), self.ratios):
            out.append(indices[lo : lo + size])
            lo += size
        return out

    def split(self, dataset_iterator: DatasetIteratorIF) -> list[DatasetIteratorView]:
        return [DatasetIteratorView(dataset_iterator, ix) for ix in self.get_indices(dataset_iterator)]


class StratifiedSplitterImpl(SplitterIF):
    """Splits every class (target) by ``ratios`` on its own, so each split keeps the class
    proportions (up to one sample per class). Targets come from ``it.targets`` when the iterator
    knows them (a datago iterator does, from its listing), else from ``it[i][target_pos]``.

    Raises:
        ValueError: negative ratios, or all zero.
    """

    def __init__(self, ratios: Sequence[float], seed: int | None = 1, target_pos: int = 1) -> None:
        self.ratios = _check_ratios(ratios)
        self.seed = seed
        self.target_pos = target_pos

    def get_indices(self, dataset_iterator: DatasetIteratorIF) -> list[list[int]]:
        targets = targets_of(dataset_iterator, self.target_pos)
        rng = random.Random(self.seed)
        by_class: dict[Any, list[int]] = {}
        for i, t in enumerate(targets):
            by_class.setdefault(t, []).append(i)
        out: list[list[int]] = [[] for _ in self.ratios]
        for t in sorted(by_class, key=repr):
            members = by_class[t]
            rng.shuffle(members)
            lo = 0
            for k, size in enumerate(_sizes(len(members), self.ratios)):
                out[k].extend(members[lo : lo + size])
                lo += size
        for part in out:
            rng.shuffle(part)
        return out

    def split(self, dataset_iterator: DatasetIteratorIF) -> list[DatasetIteratorView]:
        return [DatasetIteratorView(dataset_iterator, ix) for ix in self.get_indices(dataset_iterator)]


class Splitter(SplitterIF):
    """DataStack's facade over a splitter implementation."""

    def __init__(self, splitter_impl: SplitterIF) -> None:
        self.splitter_impl = splitter_impl

    def split(self, dataset_iterator: DatasetIteratorIF) -> list[DatasetIteratorView]:
        return self.splitter_impl.split(dataset_iterator)

    def get_indices(self, dataset_iterator: DatasetIteratorIF) -> list[list[int]]:
        return self.splitter_impl.get_indices(dataset_iterator)


class SplitterFactory:
    """DataStack's factory for splitters."""

    @staticmethod
    def get_random_splitter(ratios: Sequence[float], seed: int) -> Splitter:
        return Splitter(RandomSplitterImpl(ratios, seed=seed))

    @staticmethod
    def get_stratified_splitter(ratios: Sequence[float], seed: int) -> Splitter:
        return Splitter(StratifiedSplitterImpl(ratios, seed=seed))
