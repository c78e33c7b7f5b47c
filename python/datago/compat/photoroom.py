"""Pieces shared by the Photoroom-datago compatibility layers: RUST_LOG parsing and the
native-types view of a sample (``get_sample_auto_convert``)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..sample import Sample

_RUST_LEVELS = ("trace", "debug", "info", "warn", "error", "off")


def rust_log_level(spec: str | None) -> str | None:
    """The level a ``RUST_LOG`` value (env_logger's syntax, read by datago's Rust edition) sets for
    datago: comma-separated directives ``level``, ``target=level`` or ``target`` (``/regex`` filters
    are ignored); a ``datago...=level`` directive wins over a bare level. Returns the lower-case
    level name, or None when the value sets none (the same rule as the core's, go/capi/rustlog.go).
    """
    bare = ours = None
    for d in (spec or "").split(","):
        d = d.split("/", 1)[0].strip()
        if not d:
            continue
        target, eq, lvl = d.partition("=")
        if not eq:
            if d.lower() in _RUST_LEVELS:
                bare = d.lower()
        elif target.strip().startswith("datago") and lvl.strip().lower() in _RUST_LEVELS:
            ours = lvl.strip().lower()
    return ours or bare


def env_log_level() -> str | None:
    """The log level the environment asks for: ``DATAGO_LOG``, else ``RUST_LOG`` (datago's
    variable), else None."""
    return os.environ.get("DATAGO_LOG") or rust_log_level(os.environ.get("RUST_LOG"))


def auto_convert(sample: Sample | None) -> dict[str, Any] | None:
    """A sample as datago's ``get_sample_auto_convert`` returns it: a dict of native Python types.

    Keys: ``id`` (str), ``source`` (str), ``duplicate_state`` (int), ``attributes`` (dict),
    ``tags`` (list[str]), ``coca_embedding`` (list[float], empty when none), ``latents``
    (dict[str, numpy.ndarray | bytes]: ``.npy`` payloads as arrays), ``image`` (PIL.Image.Image or
    None), ``masks`` and ``additional_images`` (dict[str, PIL.Image.Image]). Images are the
    sample's PIL images (mapped on the C buffer where possible, decoded when pre-encoded). None
    passes through (the end of the stream).
    """
    if sample is None:
        return None
    return {
        "id": sample.id,
        "source": sample.source,
        "duplicate_state": sample.duplicate_state,
        "attributes": sample.attributes,
        "tags": list(sample.tags),
        "coca_embedding": [float(x) for x in sample.coca_embedding],
        "latents": dict(sample.latents),
        "image": sample.image,
        "masks": dict(sample.masks),
        "additional_images": dict(sample.additional_images),
    }
