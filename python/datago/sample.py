"""Samples: Python views over the C memory of a datago_sample.

A :class:`Sample` owns one ``datago_sample*``. Pixel data is never copied: ``Sample.image`` is a
``PIL.Image.Image`` mapped onto the C buffer and ``Sample.image_array`` a numpy view of it. Every
view keeps the C sample alive, so a view may outlive its Sample; the C memory is freed (by
``datago_sample_free``) when the Sample and the last view are gone.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from PIL import Image

from . import _lib

_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


@dataclass(frozen=True)
class ImageInfo:
    """Geometry of one image of a sample.

    Attributes:
        width, height: size in pixels after crop/resize.
        channels: 1 (L), 2 (LA), 3 (RGB) or 4 (RGBA); -1 when ``encoded``.
        bit_depth: bits per channel (8).
        original_width, original_height: size in pixels of the upright source image.
        encoded: True when the buffer holds a PNG/JPEG file (``pre_encode_images``).
        nbytes: size of the C buffer in bytes.
    """

    width: int
    height: int
    channels: int
    bit_depth: int
    original_width: int
    original_height: int
    encoded: bool
    nbytes: int


class _Owner:
    """Holds the datago_sample* and frees it when the last reference (Sample or view) dies."""

    __slots__ = ("__weakref__", "ptr")

    def __init__(self, ptr: Any) -> None:
        self.ptr = _lib.ffi.gc(ptr, _lib._lib.datago_sample_free)


def _buffer(owner: _Owner, data: Any, nbytes: int) -> Any:
    """A cffi buffer over C memory that keeps ``owner`` alive while the buffer (or a view) lives."""
    keep = _lib.ffi.gc(_lib.ffi.cast("uint8_t *", data), lambda _p, _o=owner: None)
    return _lib.ffi.buffer(keep, nbytes)


def _array(owner: _Owner, c_img: Any) -> np.ndarray:
    """numpy (H, W, C) uint8 view of a raw image (C = channels; padding of RGBX is hidden)."""
    h, w, c, stride = c_img.height, c_img.width, c_img.channels, c_img.pixel_stride
    buf = _buffer(owner, c_img.data, c_img.len)
    arr = np.ndarray((h, w, c), dtype=np.uint8, buffer=buf, strides=(w * stride, stride, 1))
    arr.flags.writeable = False
    return arr


def _pil(owner: _Owner, c_img: Any) -> Image.Image:
    """A PIL image over the C buffer: mapped without a copy for L, RGB (stored RGBX) and RGBA."""
    if c_img.encoded:
        data = bytes(_lib.ffi.buffer(c_img.data, c_img.len))
        opened: Image.Image = Image.open(io.BytesIO(data))
        opened.load()
        return opened
    mode = _MODES[c_img.channels]
    size = (c_img.width, c_img.height)
    stride = c_img.pixel_stride
    buf = _buffer(owner, c_img.data, c_img.len)
    if (mode, stride) in (("L", 1), ("RGB", 4), ("RGBA", 4)):
        core = Image.core.map_buffer(buf, size, "raw", 0, (mode, 0, 1))
        im = Image.new(mode, (0, 0))._new(core)
        im.readonly = 1
        return im
    # LA, or packed RGB (pil_zero_copy=false): Pillow cannot map these layouts, so copy
    rawmode = {("RGB", 3): "RGB", ("LA", 2): "LA"}[(mode, stride)]
    return Image.frombytes(mode, size, bytes(buf), "raw", rawmode)


def _info(c_img: Any) -> ImageInfo:
    return ImageInfo(
        width=c_img.width,
        height=c_img.height,
        channels=c_img.channels,
        bit_depth=c_img.bit_depth,
        original_width=c_img.original_width,
        original_height=c_img.original_height,
        encoded=bool(c_img.encoded),
        nbytes=c_img.len,
    )


def _name(c_img: Any) -> str:
    return _lib.ffi.string(c_img.name).decode() if c_img.name != _lib.ffi.NULL else ""


class Sample:
    """One training sample, with datago's field names.

    Attributes (computed on first access, then cached):
        id (str): sample id — the path relative to ``root_path`` for the filesystem source, the
            key for WebDataset, the datapoint id for the db source.
        source (str): ``"filesystem"``, the shard URL, or the db source name.
        attributes (dict): metadata with typed values (empty for the filesystem source).
        image (PIL.Image.Image | None): the processed image, mapped onto the C buffer (mode L, RGB,
            RGBA; LA is copied), or decoded from the bytes when ``pre_encode_images``.
        image_array (numpy.ndarray | None): (H, W, C) uint8 read-only view of the same buffer.
        image_bytes (memoryview | None): the encoded file when ``pre_encode_images``.
        image_info (ImageInfo | None): width, height, channels, original size.
        original_width, original_height (int): size of the upright source image in pixels.
        masks, additional_images (dict[str, PIL.Image.Image]): same bucket as ``image``.
        mask_arrays, additional_image_arrays (dict[str, numpy.ndarray]): numpy views of those.
        latents (dict[str, bytes | numpy.ndarray]): raw payloads; ``.npy`` payloads as arrays.
        tags (list[str]), coca_embedding (numpy.ndarray float32 (N,)), duplicate_state (int).
    """

    __slots__ = ("__dict__", "_c", "_owner")

    def __init__(self, ptr: Any) -> None:
        self._owner = _Owner(ptr)
        self._c = ptr

    # -- scalars -------------------------------------------------------------------------------
    @cached_property
    def id(self) -> str:
        return _lib.ffi.string(self._c.id).decode()

    @cached_property
    def source(self) -> str:
        return _lib.ffi.string(self._c.source).decode()

    @cached_property
    def attributes(self) -> dict[str, Any]:
        return json.loads(_lib.ffi.string(self._c.attributes_json))

    @cached_property
    def tags(self) -> list[str]:
        return [_lib.ffi.string(self._c.tags[i]).decode() for i in range(self._c.n_tags)]

    @cached_property
    def coca_embedding(self) -> np.ndarray:
        n = self._c.coca_embedding_len
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        buf = _buffer(self._owner, self._c.coca_embedding, n * 4)
        return np.frombuffer(buf, dtype=np.float32)

    @property
    def duplicate_state(self) -> int:
        return int(self._c.duplicate_state)

    # -- main image ----------------------------------------------------------------------------
    @property
    def has_image(self) -> bool:
        return self._c.image.data != _lib.ffi.NULL

    @cached_property
    def image(self) -> Image.Image | None:
        return _pil(self._owner, self._c.image) if self.has_image else None

    @cached_property
    def image_array(self) -> np.ndarray | None:
        """(H, W, C) uint8 view of the C pixel buffer (no copy).

        Raises:
            ValueError: when the image is encoded (use ``image`` or ``image_bytes``).
        """
        if not self.has_image:
            return None
        if self._c.image.encoded:
            raise ValueError("the image is encoded (pre_encode_images); use .image or .image_bytes")
        return _array(self._owner, self._c.image)

    @cached_property
    def image_bytes(self) -> memoryview | None:
        if not self.has_image or not self._c.image.encoded:
            return None
        return memoryview(_buffer(self._owner, self._c.image.data, self._c.image.len))

    @cached_property
    def image_info(self) -> ImageInfo | None:
        return _info(self._c.image) if self.has_image else None

    @property
    def original_width(self) -> int:
        return int(self._c.image.original_width)

    @property
    def original_height(self) -> int:
        return int(self._c.image.original_height)

    # -- other payloads ------------------------------------------------------------------------
    def _named(self, arr: Any, n: int) -> list[Any]:
        return [arr[i] for i in range(n)]

    @cached_property
    def masks(self) -> dict[str, Image.Image]:
        return {_name(m): _pil(self._owner, m) for m in self._named(self._c.masks, self._c.n_masks)}

    @cached_property
    def mask_arrays(self) -> dict[str, np.ndarray]:
        items = self._named(self._c.masks, self._c.n_masks)
        return {_name(m): _array(self._owner, m) for m in items if not m.encoded}

    @cached_property
    def additional_images(self) -> dict[str, Image.Image]:
        items = self._named(self._c.additional_images, self._c.n_additional_images)
        return {_name(m): _pil(self._owner, m) for m in items}

    @cached_property
    def additional_image_arrays(self) -> dict[str, np.ndarray]:
        items = self._named(self._c.additional_images, self._c.n_additional_images)
        return {_name(m): _array(self._owner, m) for m in items if not m.encoded}

    @cached_property
    def latents(self) -> dict[str, bytes | np.ndarray]:
        out: dict[str, bytes | np.ndarray] = {}
        for i in range(self._c.n_latents):
            blob = self._c.latents[i]
            name = _lib.ffi.string(blob.name).decode()
            data = bytes(_lib.ffi.buffer(blob.data, blob.len))
            out[name] = np.load(io.BytesIO(data)) if name.endswith("npy") else data
        return out

    def __repr__(self) -> str:
        info = self.image_info
        size = f"{info.width}x{info.height}x{info.channels}" if info else "no image"
        return f"Sample(id={self.id!r}, source={self.source!r}, image={size})"
