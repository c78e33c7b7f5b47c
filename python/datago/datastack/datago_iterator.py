"""Datago-backed dataset iterators: any folder, shard set or engine query as an indexable dataset,
its samples decoded by the Go core (map-style, in parallel, with the config's image settings)."""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..map_dataset import MapDataset
from ..sample import Sample
from .dataset.iterator import DatasetIterator

#: What ``it[i][0]`` is: "array" (numpy (H, W, C) uint8 view of the C buffer), "pil"
#: (PIL.Image over it) or "sample" (the :class:`datago.Sample`, with masks, latents, ...).
SAMPLE_FORMATS = ("array", "pil", "sample")


def folder_label(entry: Mapping[str, Any]) -> str:
    """The default label of a sample: the folder of its id (``"cats/x.jpg"`` -> ``"cats"``; ``""``
    at the top level) — the ImageFolder layout ``root/<class>/<image>``."""
    return posixpath.dirname(str(entry["id"]))


class DatagoDatasetIterator(DatasetIterator):
    """``it[i]`` -> ``(image, target, tag)`` for sample i of a datago source.

    Sample i is the i-th of the source's index (a folder: its sorted listing; see
    :meth:`datago.DatagoClient.get_items`). ``target`` is the index of the sample's label in
    :attr:`classes` (sorted labels), ``tag`` the sample id (a folder: the path relative to the
    root). Labels come from the listing (``label_fn(entry)``, entry = ``{"id", "source",
    "attributes"}``; default: the id's folder), so :attr:`targets` and the stratified splitter never
    decode an image. ``get_items`` (used by views, combinations and the torch adapter) decodes a
    whole list in parallel in the Go core.

    Args:
        config: a datago config (dict or JSON string) or a :class:`datago.MapDataset`.
        label_fn: the label of an index entry (hashable, sortable by ``repr``).
        sample_format: one of :data:`SAMPLE_FORMATS`.

    Raises:
        ValueError: an unknown ``sample_format``.
        datago.ConfigError / datago.NotFoundError: a bad config or a missing root (on construction:
            the index is listed).
        datago.SampleSkippedError: (on access) a corrupt or missing image, logged with its path.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | str | MapDataset,
        label_fn: Callable[[Mapping[str, Any]], Any] = folder_label,
        sample_format: str = "array",
    ) -> None:
        if sample_format not in SAMPLE_FORMATS:
            raise ValueError(f"sample_format must be one of {SAMPLE_FORMATS}, not {sample_format!r}")
        self._dataset = config if isinstance(config, MapDataset) else MapDataset(config)
        self._format = sample_format
        self._entries = self._dataset.index()
        labels = [label_fn(e) for e in self._entries]
        self._classes = sorted(set(labels), key=repr)
        position = {c: k for k, c in enumerate(self._classes)}
        self._targets = [position[label] for label in labels]
        self._tags = [str(e["id"]) for e in self._entries]

    @property
    def dataset(self) -> MapDataset:
        """The map-style dataset underneath (samples as :class:`datago.Sample`)."""
        return self._dataset

    @property
    def classes(self) -> list[Any]:
        """The labels, sorted; target t is ``classes[t]``."""
        return self._classes

    @property
    def targets(self) -> list[int]:
        return list(self._targets)

    @property
    def tags(self) -> list[str]:
        """Every sample's id, in index order."""
        return list(self._tags)

    def __len__(self) -> int:
        return len(self._entries)

    def _convert(self, sample: Sample) -> Any:
        if self._format == "array":
            return sample.image_array
        if self._format == "pil":
            return sample.image
        return sample

    def get_items(self, indices: Sequence[int]) -> list[tuple[Any, int, str]]:
        n = len(self)
        idx = [int(i) + n if int(i) < 0 else int(i) for i in indices]
        samples = self._dataset.get_items(idx)
        return [(self._convert(s), self._targets[i], self._tags[i]) for i, s in zip(idx, samples, strict=True)]  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, int, str]:
        return self.get_items([index])[0]
