"""The buffer helpers of Photoroom datago's Go edition (its ``polyglot.py`` / ``go_types.py``), for
the payloads of :mod:`datago.datago` (``sample.Image``, ``sample.Masks[...]``, ``sample.Latents[...]``).

Same names and results as datago's: ``uint8_array_to_numpy`` (pixels as ``(H, W, C)`` uint8, an
encoded file as a flat uint8 array), ``go_array_to_numpy`` (a ``.npy`` payload as its array) and
``go_array_to_pil_image`` (pixels as a PIL image; an encoded file is returned as its flat uint8
array, undecoded, as datago does).
"""

from __future__ import annotations

import io
import logging
from typing import Any

import numpy as np
from PIL import Image

logger = logging.getLogger("datago")


def _bytes_view(go_array: Any) -> np.ndarray:
    data = go_array.Data
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    return np.frombuffer(bytes(data), dtype=np.uint8)


def uint8_array_to_numpy(go_array: Any) -> np.ndarray | None:
    """The payload's bytes as uint8: ``(Height, Width, Channels)`` for pixels, ``(Len,)`` for an
    encoded file (``Channels <= 0``); no copy. None when the payload is empty.

    Raises:
        ValueError: the byte count does not match ``Height * Width * Channels``.
    """
    flat = _bytes_view(go_array)
    if flat.size == 0:
        return None
    if go_array.Channels <= 0:
        return flat
    shape = (go_array.Height, go_array.Width, go_array.Channels)
    if flat.size != shape[0] * shape[1] * shape[2]:
        raise ValueError(f"uint8_array_to_numpy: {flat.size} bytes for an image of shape {shape}")
    return flat.reshape(shape)


def go_array_to_numpy(go_array: Any) -> np.ndarray | None:
    """A numpy-serialized (``.npy``) payload as its array; None when empty or not a readable
    ``.npy`` (logged as a warning; pickled arrays are refused)."""
    flat = _bytes_view(go_array)
    if flat.size == 0:
        return None
    try:
        return np.load(io.BytesIO(flat.tobytes()), allow_pickle=False)
    except ValueError as e:
        logger.warning("datago: could not deserialize a numpy array: %s", e)
        return None


def go_array_to_pil_image(go_array: Any) -> Image.Image | np.ndarray | None:
    """Pixels as a PIL image (mode L for 1 channel, RGB for 3, RGBA for 4); an encoded file
    (``Channels <= 0``) is returned undecoded as its uint8 array (datago's behaviour: decode it with
    ``PIL.Image.open(io.BytesIO(arr))``); None when empty.

    Raises:
        ValueError: 2 channels (grey + alpha, which datago's helper does not handle either) or a
            byte count that does not match the shape.
    """
    arr = uint8_array_to_numpy(go_array)
    if arr is None or go_array.Channels <= 0:
        return arr
    h, w, c = arr.shape
    if c == 1:
        return Image.fromarray(np.ascontiguousarray(arr[:, :, 0]), mode="L")
    if c == 3:
        return Image.fromarray(arr, mode="RGB")
    if c == 4:
        return Image.frombuffer("RGBA", (w, h), np.ascontiguousarray(arr), "raw", "RGBA", 0, 1)
    raise ValueError(f"go_array_to_pil_image: {c} channels (expected 1, 3 or 4)")


__all__ = ["go_array_to_numpy", "go_array_to_pil_image", "uint8_array_to_numpy"]
