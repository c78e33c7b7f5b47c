"""Batches: Python views over the C memory of a datago_batch (config key ``batch_size``).

A :class:`Batch` owns one ``datago_batch*``. Its images are one contiguous C buffer of shape
(N, H, W, C) — or (N, C, H, W) with ``image_layout: "CHW"`` — written there by the core's
transform stage; :attr:`Batch.images` is a writable numpy view of it (no copy) and
:meth:`Batch.to_torch` a tensor over the same memory. Every view keeps the C batch alive; it is
freed (by ``datago_batch_free``, pure C) when the Batch and the last view are gone.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _lib


class _Owner:
    """Holds the datago_batch* and frees it when the last reference (Batch or view) dies."""

    __slots__ = ("__weakref__", "ptr")

    def __init__(self, ptr: Any) -> None:
        self.ptr = _lib.ffi.gc(ptr, _lib._lib.datago_batch_free)


def _buffer(owner: _Owner, data: Any, nbytes: int) -> Any:
    """A writable cffi buffer over C memory that keeps ``owner`` alive while it (or a view) lives."""
    keep = _lib.ffi.gc(_lib.ffi.cast("uint8_t *", data), lambda _p, _o=owner: None)
    return _lib.ffi.buffer(keep, nbytes)


def _strings(arr: Any, n: int) -> list[str]:
    return [_lib.ffi.string(arr[i]).decode("utf-8", "replace") for i in range(n)]


class Batch:
    """N samples of one bucket, as arrays over C memory.

    Attributes:
        images (numpy.ndarray): uint8, (N, H, W, C) for ``image_layout`` "HWC" (default) or
            (N, C, H, W) for "CHW"; C is 3 (``batch_mode`` "RGB", default), 1 ("L") or 4 ("RGBA").
            Writable; owned by the batch (no copy of the core's buffer).
        ids (list[str]), sources (list[str]), attributes (list[dict]): per sample.
        bucket (tuple[int, int]): (W, H) in pixels.
        original_sizes (list[tuple[int, int]]): (W, H) of each upright source image, in pixels.
        masks (dict[str, numpy.ndarray]): name -> uint8 (N, H, W); zeros where a sample has none.
        additional_images (dict[str, numpy.ndarray]): name -> uint8 arrays shaped like ``images``.
        latents (list[dict[str, bytes | numpy.ndarray]]): per sample; ``.npy`` payloads as arrays.
        layout (str): "HWC" or "CHW".
        data_ptr (int): address of the C image buffer (``images.ctypes.data`` is the same).
    """

    def __init__(self, ptr: Any) -> None:
        self._owner = _Owner(ptr)
        c = ptr
        self._c = c
        n, h, w, ch = int(c.n), int(c.height), int(c.width), int(c.channels)
        self.layout = "CHW" if c.layout == 1 else "HWC"
        shape = (n, ch, h, w) if self.layout == "CHW" else (n, h, w, ch)
        self.data_ptr = int(_lib.ffi.cast("uintptr_t", c.images))
        self.images = self._array(c.images, shape)
        self.ids = _strings(c.ids, n)
        self.sources = _strings(c.sources, n)
        self.attributes: list[dict[str, Any]] = [json.loads(_lib.ffi.string(c.attributes_json[i])) for i in range(n)]
        self.bucket = (w, h)
        self.original_sizes = [(int(c.original_widths[i]), int(c.original_heights[i])) for i in range(n)]
        self.masks = {
            _lib.ffi.string(c.mask_names[k]).decode(): self._array(c.masks[k], (n, h, w)) for k in range(c.n_masks)
        }
        self.additional_images = {
            _lib.ffi.string(c.additional_image_names[k]).decode(): self._array(c.additional_images[k], shape)
            for k in range(c.n_additional_images)
        }
        self.seqs = [int(c.seqs[i]) for i in range(n)]
        self._latents: list[dict[str, bytes | np.ndarray]] | None = None

    def _array(self, data: Any, shape: Sequence[int]) -> np.ndarray:
        nbytes = int(np.prod(shape))
        if nbytes == 0:
            return np.zeros(shape, dtype=np.uint8)
        return np.ndarray(shape, dtype=np.uint8, buffer=_buffer(self._owner, data, nbytes))

    @property
    def latents(self) -> list[dict[str, bytes | np.ndarray]]:
        if self._latents is None:
            c, out = self._c, []
            for i in range(int(c.n)):
                d: dict[str, bytes | np.ndarray] = {}
                if c.latents != _lib.ffi.NULL:
                    for j in range(int(c.n_latents[i])):
                        blob = c.latents[i][j]
                        name = _lib.ffi.string(blob.name).decode()
                        data = bytes(_lib.ffi.buffer(blob.data, blob.len))
                        d[name] = np.load(io.BytesIO(data)) if name.endswith("npy") else data
                out.append(d)
            self._latents = out
        return self._latents

    def __len__(self) -> int:
        return len(self.ids)

    def to_torch(self) -> dict[str, Any]:
        """Tensors over the batch's memory (no copy, no warning).

        Returns:
            dict with "images" (torch.uint8 tensor sharing memory with ``images``), "masks" and
            "additional_images" (name -> tensor, shared likewise), "ids", "sources", "attributes",
            "original_sizes" (lists), "bucket" ((W, H)) and "latents".

        Raises:
            ImportError: torch is not installed.
        """
        import torch

        return {
            "images": torch.from_numpy(self.images),
            "masks": {k: torch.from_numpy(v) for k, v in self.masks.items()},
            "additional_images": {k: torch.from_numpy(v) for k, v in self.additional_images.items()},
            "ids": list(self.ids),
            "sources": list(self.sources),
            "attributes": list(self.attributes),
            "original_sizes": list(self.original_sizes),
            "bucket": self.bucket,
            "latents": self.latents,
        }

    def __repr__(self) -> str:
        return f"Batch(n={len(self)}, bucket={self.bucket}, layout={self.layout!r}, images={self.images.shape})"
