"""Helpers of Photoroom datago's ``raw_types.py`` (Rust edition), for this package's samples.

datago's users convert the raw payloads of ``get_sample()`` with ``raw_array_to_numpy``,
``decode_image_payload`` and ``get_image_mode``; the same names work here on:

* this package's :class:`~datago.Sample` fields: ``sample.image`` (a PIL image), ``sample.image_bytes``
  (a pre-encoded file), ``sample.latents[name]`` (an array, or bytes);
* :class:`ImagePayload` (datago's payload type: ``data`` plus geometry), e.g. built by
  :meth:`ImagePayload.from_sample`;
* raw ``bytes`` / ``memoryview`` and anything with a ``data`` attribute holding bytes.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from .sample import Sample

logger = logging.getLogger("datago")

_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


@dataclass(frozen=True)
class ImagePayload:
    """One image as datago (Rust edition) hands it out in a raw sample.

    Attributes:
        data: the bytes: packed pixels (``height * width * channels`` uint8, row-major), or an
            encoded PNG/JPEG file when ``is_encoded``.
        width, height: size in pixels; channels: 1, 2, 3 or 4 (-1 when encoded); bit_depth: 8.
        original_width, original_height: size in pixels of the upright source image.
        is_encoded: ``data`` is a PNG/JPEG file.
    """

    data: bytes
    width: int
    height: int
    channels: int
    bit_depth: int = 8
    original_width: int = 0
    original_height: int = 0
    is_encoded: bool = False

    @classmethod
    def from_sample(cls, sample: Sample) -> ImagePayload | None:
        """The main image of ``sample`` as a payload (a copy of its bytes), None without one."""
        info = sample.image_info
        if info is None:
            return None
        if info.encoded:
            data = bytes(sample.image_bytes or b"")
        else:
            arr = sample.image_array
            data = np.ascontiguousarray(arr).tobytes() if arr is not None else b""
        return cls(data, info.width, info.height, info.channels, info.bit_depth,
                   info.original_width, info.original_height, info.encoded)

    def to_numpy_array(self) -> np.ndarray | None:
        """``(height, width, channels)`` uint8 for raw pixels; the decoded image as an array when
        encoded; None when empty."""
        if not self.data:
            return None
        if self.is_encoded:
            return np.asarray(decode_image_payload(self))
        arr = np.frombuffer(self.data, dtype=np.uint8)
        return arr.reshape(self.height, self.width, self.channels)

    def to_pil_image(self) -> Image.Image | None:
        """A PIL image (decoded when encoded; mode L, LA, RGB or RGBA by channels), None when empty."""
        if not self.data:
            return None
        if self.is_encoded:
            return decode_image_payload(self)
        return Image.frombytes(_MODES[self.channels], (self.width, self.height), self.data)


def _payload_bytes(payload: Any) -> bytes | memoryview | None:
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return payload
    data = getattr(payload, "data", None)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return data
    return None


def raw_array_to_numpy(raw_array: Any) -> np.ndarray | None:
    """A numpy-serialized (``.npy``) payload as an array, like datago's helper.

    Args:
        raw_array: ``.npy`` bytes, a payload with a ``data`` attribute holding them, or an array
            (``sample.latents`` already holds ``.npy`` latents as arrays: returned as is).

    Returns:
        The array (any dtype and shape), or None when the payload is empty or not a readable
        ``.npy`` (logged as a warning, as datago prints it; pickled arrays are refused).
    """
    if isinstance(raw_array, np.ndarray):
        return raw_array
    data = _payload_bytes(raw_array)
    if data is None:
        raise TypeError(f"raw_array_to_numpy: expected .npy bytes or a payload, not {type(raw_array).__name__}")
    if len(data) == 0:
        return None
    try:
        return np.load(io.BytesIO(bytes(data)), allow_pickle=False)
    except ValueError as e:
        logger.warning("datago: could not deserialize a numpy array: %s", e)
        return None


def decode_image_payload(payload: Any) -> Image.Image:
    """Decode an encoded image payload into a PIL image (lazy, as ``PIL.Image.open``).

    Args:
        payload: an encoded file as bytes / memoryview (e.g. ``sample.image_bytes`` with
            ``pre_encode_images``), a payload with ``data`` holding one, or a PIL image (returned
            as is: this package's ``sample.image`` is already decoded).

    Raises:
        PIL.UnidentifiedImageError: the bytes are not an image file.
        TypeError: another type.
    """
    if isinstance(payload, Image.Image):
        return payload
    data = _payload_bytes(payload)
    if data is None:
        raise TypeError(f"decode_image_payload: expected image bytes or a payload, not {type(payload).__name__}")
    return Image.open(io.BytesIO(bytes(data)))


def get_image_mode(image_or_payload: Any) -> str:
    """The PIL mode ("L", "LA", "RGB", "RGBA", ...) of a PIL image, or of an encoded payload
    (decoded first, as datago does)."""
    if isinstance(image_or_payload, ImagePayload) and not image_or_payload.is_encoded:
        return _MODES[image_or_payload.channels]
    mode = getattr(image_or_payload, "mode", None)
    if isinstance(mode, str):
        return mode
    return decode_image_payload(image_or_payload).mode


__all__ = ["ImagePayload", "decode_image_payload", "get_image_mode", "raw_array_to_numpy"]
