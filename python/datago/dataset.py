"""``DatagoIterDataset``: Photoroom datago's iterable dataset wrapper (its ``python/dataset.py``).

``from datago.dataset import DatagoIterDataset`` (or ``from datago import DatagoIterDataset``)
takes the place of datago's ``from dataset import DatagoIterDataset``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .client import DatagoClient
from .sample import Sample

#: len() of a dataset whose config sets no limit (datago's 1e9, as an int).
NO_LIMIT_LEN = 1_000_000_000


class DatagoIterDataset:
    """An iterator over a :class:`DatagoClient`'s samples, as datago's ``DatagoIterDataset``.

    Args:
        datago_config: the client config (a dict, or a JSON string).
        return_python_types: True (default) yields dicts of native types (datago's
            ``get_sample_auto_convert``: PIL images, lists, dicts); False yields :class:`Sample`
            objects (views over the C buffers).

    The client starts on construction. ``len(dataset)`` is the config's ``limit`` (1e9 without
    one, or with 0, which here means "every sample"); iteration stops after ``len`` samples or at
    the end of the stream, whichever is first. Ctrl-C during a wait stops the client and ends the
    iteration (datago's behaviour). The client is stopped when the dataset is collected; call
    :meth:`stop` to stop it earlier.

    Raises:
        ConfigError / NotFoundError: as :class:`DatagoClient`.
    """

    def __init__(self, datago_config: Mapping[str, Any] | str, return_python_types: bool = True) -> None:
        cfg = json.loads(datago_config) if isinstance(datago_config, str) else dict(datago_config)
        self.client = DatagoClient(cfg)
        self.client.start()
        self.return_python_types = return_python_types
        limit = int(cfg.get("limit") or 0)
        self.len = limit if limit > 0 else NO_LIMIT_LEN
        self.count = 0
        self.get_sample_proxy = self.client.get_sample_auto_convert if return_python_types else self.client.get_sample

    def __iter__(self) -> DatagoIterDataset:
        return self

    def __len__(self) -> int:
        return self.len

    def __next__(self) -> dict[str, Any] | Sample:
        try:
            self.count += 1
            if self.count > self.len:
                raise StopIteration
            sample = self.get_sample_proxy()
            if sample is None:
                raise StopIteration
            return sample
        except KeyboardInterrupt:
            self.client.stop()
            raise StopIteration from None

    def stop(self) -> None:
        """Stop the client (idempotent); samples already yielded stay valid."""
        self.client.stop()

    def __del__(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass


__all__ = ["DatagoIterDataset"]
