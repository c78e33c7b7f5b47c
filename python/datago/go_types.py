"""The Go edition's later name for :mod:`datago.polyglot` (its ``go_types.py``): the same helpers."""

from __future__ import annotations

from .polyglot import go_array_to_numpy, go_array_to_pil_image, uint8_array_to_numpy

__all__ = ["go_array_to_numpy", "go_array_to_pil_image", "uint8_array_to_numpy"]
