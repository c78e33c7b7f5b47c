"""MapDataset: a map-style dataset (``len``, ``ds[i]``) over any datago source, decoded by the Go core."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from .client import DatagoClient
from .errors import DatagoError
from .sample import Sample


class SampleSkippedError(DatagoError, LookupError):
    """The sample at an index could not be made (corrupt image, missing file); the ``datago`` logger
    has its path and reason."""


class MapDataset:
    """Random access to a datago source: ``len(ds)`` samples, ``ds[i]`` the i-th as a :class:`Sample`.

    Index i is the i-th sample of the source's index (a folder: its sorted listing; see
    :meth:`DatagoClient.get_items`). Samples are decoded by the Go core with the config's image
    settings; ``ds.get_items(indices)`` (and torch's batched ``__getitems__``) decode a whole
    list in parallel on ``num_threads`` workers.

    The dataset holds the config, not a client: each process (e.g. each DataLoader worker, after
    fork or spawn) opens its own client on first use, so it pickles and forks safely.

    Args:
        config: a datago config (dict or JSON string), as for :class:`DatagoClient`. ``limit``,
            batching and order keys do not apply to random access.
        on_skip: ``"raise"`` (default): a sample that cannot be made raises
            :class:`SampleSkippedError`; ``"none"``: it is returned as None.

    Raises:
        ConfigError: (a ValueError) a bad config (on first use), or a bad ``on_skip``.
    """

    def __init__(self, config: Mapping[str, Any] | str, on_skip: str = "raise") -> None:
        if on_skip not in ("raise", "none"):
            raise ValueError(f"on_skip must be 'raise' or 'none', not {on_skip!r}")
        self._config = config if isinstance(config, str) else json.dumps(dict(config))
        self._on_skip = on_skip
        self._client: DatagoClient | None = None
        self._pid = -1
        self._len: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"_config": self._config, "_on_skip": self._on_skip, "_len": self._len}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._client, self._pid = None, -1

    @property
    def client(self) -> DatagoClient:
        """This process's client (opened on first use; a forked child opens its own)."""
        if self._client is None or self._pid != os.getpid():
            self._client = DatagoClient(self._config)
            self._pid = os.getpid()
        return self._client

    def __len__(self) -> int:
        if self._len is None:
            self._len = self.client.num_items()
        return self._len

    def index(self) -> list[dict[str, Any]]:
        """``{"id", "source", "attributes"}`` of every sample, from the listing (no decoding); see
        :meth:`DatagoClient.index`."""
        return self.client.index()

    def _checked(self, index: int, sample: Sample | None) -> Sample | None:
        if sample is None and self._on_skip == "raise":
            raise SampleSkippedError(
                f"sample {index} could not be made (corrupt or missing; see the 'datago' logger for its path)"
            )
        return sample

    def get_items(self, indices: Sequence[int]) -> list[Sample | None]:
        """The samples at ``indices`` (negative indices count from the end), decoded in parallel.

        Raises:
            IndexError: an index out of range.
            SampleSkippedError: with ``on_skip="raise"``, a sample could not be made.
        """
        n = len(self)
        idx = [int(i) + n if int(i) < 0 else int(i) for i in indices]
        for i, j in zip(indices, idx, strict=True):
            if not 0 <= j < n:
                raise IndexError(f"index {i} out of range for a dataset of {n} samples")
        return [self._checked(i, s) for i, s in zip(idx, self.client.get_items(idx), strict=True)]

    def __getitems__(self, indices: Sequence[int]) -> list[Sample | None]:
        """torch.utils.data's batched fetch: one parallel decode per batch of indices."""
        return self.get_items(indices)

    def __getitem__(self, index: int) -> Sample | None:
        return self.get_items([index])[0]

    def close(self) -> None:
        """Close this process's client (idempotent); the next access opens a new one."""
        if self._client is not None and self._pid == os.getpid():
            self._client.close()
        self._client = None
