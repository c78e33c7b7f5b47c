"""A torch map-style Dataset over any dataset iterator (imported lazily: torch is optional)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .dataset.iterator import DatasetIteratorIF


def to_chw_tensor(image: Any) -> torch.Tensor:
    """A (C, H, W) uint8 tensor from an (H, W, C) uint8 array (copied: the DataLoader's workers
    send it through shared memory, and the sample's C buffer is read-only)."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1)))


class TorchDataset(Dataset):  # type: ignore[type-arg]
    """``torch.utils.data.Dataset`` over a :class:`DatasetIteratorIF` (a datago iterator, a view, a
    split, a combination): item i is ``(transform(image), target)``.

    Works with any sampler (``RandomSampler``, ``DistributedSampler``, ...). With automatic
    batching, torch calls ``__getitems__`` with the batch's indices: a datago-backed iterator then
    decodes the whole batch in parallel in the Go core. Pickles by its iterator's config (each
    DataLoader worker opens its own client).

    Args:
        iterator: the dataset; its items are ``(image (H, W, C) uint8, target, tag)``.
        transform: image -> tensor (default :func:`to_chw_tensor`: (C, H, W) uint8).
        target_transform: target -> anything collate understands (default: unchanged).
    """

    def __init__(
        self,
        iterator: DatasetIteratorIF,
        transform: Callable[[Any], Any] = to_chw_tensor,
        target_transform: Callable[[Any], Any] | None = None,
    ) -> None:
        self.iterator = iterator
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        return len(self.iterator)

    def _make(self, item: Any) -> tuple[Any, Any]:
        image, target = item[0], item[1]
        if self.target_transform is not None:
            target = self.target_transform(target)
        return self.transform(image), target

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self._make(self.iterator[index])

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, Any]]:
        return [self._make(item) for item in self.iterator.get_items(list(indices))]
