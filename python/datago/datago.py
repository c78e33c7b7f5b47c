"""Photoroom datago's Go-edition API (its gopy module): ``from datago import datago``.

A thin layer over :class:`datago.DatagoClient` with the Go edition's names::

    from datago import datago

    client = datago.GetClient(source="photos", require_images=True, has_attributes="", ...)
    client.Start()
    sample = client.GetSample()          # sample.ID, sample.Image, sample.Attributes, ...
    client.Stop()

Samples have the Go edition's fields (``ID``, ``Source``, ``Attributes``, ``DuplicateState``,
``Image``, ``Masks``, ``AdditionalImages``, ``Latents``, ``CocaEmbedding``, ``Tags``); image payloads
carry ``Data``, ``DataPtr``, ``Len``, ``Width``, ``Height``, ``Channels`` (-1: an encoded file),
``BitDepth``, ``OriginalWidth`` and ``OriginalHeight``, which the helpers of
:mod:`datago.polyglot` turn into numpy arrays and PIL images. An empty sample (``ID == ""``)
marks the end of the stream, as in the Go edition.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from .client import DatagoClient
from .sample import Sample as _Sample

logger = logging.getLogger("datago")

#: source_type values of the Go edition's configs (its constants; any spelling of ours works too).
SourceTypeDB = "db"
SourceTypeFileSystem = "file"
SourceTypeWebDataset = "webdataset"


def _address(arr: np.ndarray) -> int:
    return int(arr.ctypes.data) if arr.size else 0


class ImagePayload:
    """One image of a sample, with the Go edition's fields.

    Attributes:
        Data: ``numpy.ndarray`` uint8, 1-D: ``Height * Width * Channels`` packed pixels (row-major),
            or the encoded file when ``Channels == -1``; empty when the sample has no image.
        DataPtr: address of ``Data``'s first byte (0 when empty), valid while this payload lives.
        Len: bytes in ``Data``.
        Width, Height, Channels, BitDepth, OriginalWidth, OriginalHeight: ints (pixels; 8 bits).
    """

    def __init__(self, data: np.ndarray | None = None, width: int = 0, height: int = 0, channels: int = 0,
                 bit_depth: int = 8, original_width: int = 0, original_height: int = 0) -> None:
        self.Data = data if data is not None else np.zeros(0, dtype=np.uint8)
        self.DataPtr = _address(self.Data)
        self.Len = int(self.Data.size)
        self.Width, self.Height, self.Channels, self.BitDepth = width, height, channels, bit_depth
        self.OriginalWidth, self.OriginalHeight = original_width, original_height

    def __repr__(self) -> str:
        return f"ImagePayload({self.Width}x{self.Height}x{self.Channels}, {self.Len} bytes)"


class LatentPayload:
    """A latent (any payload that is not an image) with the Go edition's fields: ``Data`` (uint8
    ndarray; ``.npy`` bytes for arrays), ``DataPtr`` (its address, 0 when empty) and ``Len``."""

    def __init__(self, data: bytes) -> None:
        self.Data = np.frombuffer(data, dtype=np.uint8) if data else np.zeros(0, dtype=np.uint8)
        self.DataPtr = _address(self.Data)
        self.Len = int(self.Data.size)


def _raw_payload(arr: np.ndarray, info: Any) -> ImagePayload:
    flat = np.ascontiguousarray(arr).reshape(-1)  # a view when packed (the client asks for packed RGB)
    return ImagePayload(flat, info.width, info.height, info.channels, info.bit_depth,
                        info.original_width, info.original_height)


def _encoded_payload(data: memoryview | bytes, info: Any) -> ImagePayload:
    return ImagePayload(np.frombuffer(bytes(data), dtype=np.uint8), info.width, info.height, -1, info.bit_depth,
                        info.original_width, info.original_height)


class Sample:
    """A sample with the Go edition's field names; ``Sample()`` is the empty sample (``ID == ""``).

    Attributes:
        ID, Source: str. Attributes: dict. DuplicateState: int. Tags: list[str].
        CocaEmbedding: list[float]. Image: :class:`ImagePayload` (empty without an image).
        Masks, AdditionalImages: dict[str, ImagePayload]. Latents: dict[str, LatentPayload].
        sample: the underlying :class:`datago.Sample` (None for the empty sample).
    """

    def __init__(self, sample: _Sample | None = None) -> None:
        self.sample = sample
        self.ID = ""
        self.Source = ""
        self.Attributes: dict[str, Any] = {}
        self.DuplicateState = 0
        self.Tags: list[str] = []
        self.CocaEmbedding: list[float] = []
        self.Image = ImagePayload()
        self.Masks: dict[str, ImagePayload] = {}
        self.AdditionalImages: dict[str, ImagePayload] = {}
        self.Latents: dict[str, LatentPayload] = {}
        if sample is None:
            return
        self.ID, self.Source = sample.id, sample.source
        self.Attributes = sample.attributes
        self.DuplicateState = sample.duplicate_state
        self.Tags = list(sample.tags)
        self.CocaEmbedding = [float(x) for x in sample.coca_embedding]
        info = sample.image_info
        if info is not None:
            if info.encoded:
                self.Image = _encoded_payload(sample.image_bytes or b"", info)
            elif sample.image_array is not None:
                self.Image = _raw_payload(sample.image_array, info)
        self.Masks = self._named(sample.masks, sample.mask_arrays)
        self.AdditionalImages = self._named(sample.additional_images, sample.additional_image_arrays)
        for name, v in sample.latents.items():
            if isinstance(v, np.ndarray):
                buf = io.BytesIO()
                np.save(buf, v, allow_pickle=False)
                v = buf.getvalue()
            self.Latents[name] = LatentPayload(v)

    @staticmethod
    def _named(images: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> dict[str, ImagePayload]:
        out = {}
        for name, im in images.items():
            if name in arrays:
                a = arrays[name]
                out[name] = ImagePayload(np.ascontiguousarray(a).reshape(-1), a.shape[1], a.shape[0], a.shape[2])
            else:  # pre-encoded: the PIL image was decoded from the file; hand out the file
                buf = io.BytesIO()
                im.save(buf, format=im.format or "PNG")
                out[name] = ImagePayload(np.frombuffer(buf.getvalue(), dtype=np.uint8), im.width, im.height, -1)
        return out

    def __repr__(self) -> str:
        return f"Sample(ID={self.ID!r}, Source={self.Source!r}, Image={self.Image!r})"


class GoClient:
    """The Go edition's client: ``Start()``, ``GetSample()``, ``Stop()`` over a :class:`DatagoClient`.

    ``GetSample()`` before ``Start()`` logs a warning on the ``datago`` logger and returns an empty
    sample; at the end of the stream it returns an empty sample (``ID == ""``). Errors are this
    package's (:class:`datago.DatagoError` subclasses).
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        cfg = dict(config)
        image_config = dict(cfg.get("image_config") or {})
        # the Go edition's buffers are packed (H*W*C): ask the core for packed RGB
        image_config.setdefault("pil_zero_copy", False)
        cfg["image_config"] = image_config
        self.config = cfg
        self.client = DatagoClient(cfg)
        self._started = False

    def Start(self) -> None:  # noqa: N802 - the Go edition's name
        """Start the pipeline (idempotent; a start after Stop begins a new epoch)."""
        self.client.start()
        self._started = True

    def GetSample(self) -> Sample:  # noqa: N802 - the Go edition's name
        """The next sample; an empty one (``ID == ""``) at the end of the stream or before Start()."""
        if not self._started:
            logger.warning("datago: GetSample() called before Start(): call Start() first; returning an empty sample")
            return Sample()
        s = self.client.get_sample()
        return Sample(s) if s is not None else Sample()

    def Stop(self) -> None:  # noqa: N802 - the Go edition's name
        """Stop the pipeline (idempotent); samples already returned stay valid."""
        self.client.stop()
        self._started = False

    def __del__(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass


def GetClient(  # noqa: N802 - the Go edition's name
    source: str,
    require_images: bool = True,
    has_attributes: str = "",
    lacks_attributes: str = "",
    has_masks: str = "",
    lacks_masks: str = "",
    has_latents: str = "",
    lacks_latents: str = "",
    crop_and_resize: bool = False,
    prefetch_buffer_size: int = 64,
    samples_buffer_size: int = 64,
    downloads_concurrency: int = 64,
    **extra: Any,
) -> GoClient:
    """A client over the db source, with the Go edition's arguments.

    Args:
        source: datasource name(s) to read (``source_config.sources``, comma-separated).
        require_images: skip rows without an image.
        has_attributes ... lacks_latents: comma-separated presence filters ("" for none).
        crop_and_resize: into aspect-ratio buckets of ~512² pixels (downsampling ratio 16, aspect
            ratios 0.5-2).
        prefetch_buffer_size, samples_buffer_size: queue lengths (samples).
        downloads_concurrency: fetch workers (``max_connections``).
        extra: further top-level config keys of this package (e.g. ``limit``, ``rank``,
            ``world_size``), or ``source_config`` / ``image_config`` dicts merged into the above.

    The server is ``$DATAROOM_API_URL`` with the key ``$DATAROOM_API_KEY``, as in the Go edition.

    Raises:
        ConfigError: a bad value or unknown key (named).
    """
    source_config: dict[str, Any] = {"sources": source, "require_images": require_images}
    for key, value in (("has_attributes", has_attributes), ("lacks_attributes", lacks_attributes),
                       ("has_masks", has_masks), ("lacks_masks", lacks_masks),
                       ("has_latents", has_latents), ("lacks_latents", lacks_latents)):
        if value:
            source_config[key] = value
    source_config.update(extra.pop("source_config", None) or {})
    image_config: dict[str, Any] = {"crop_and_resize": crop_and_resize}
    image_config.update(extra.pop("image_config", None) or {})
    config = {
        "source_type": SourceTypeDB,
        "source_config": source_config,
        "image_config": image_config,
        "prefetch_buffer_size": prefetch_buffer_size,
        "samples_buffer_size": samples_buffer_size,
        "max_connections": downloads_concurrency,
        **extra,
    }
    return GoClient(config)


def GetClientFromJSON(config_json: str | Mapping[str, Any]) -> GoClient:  # noqa: N802 - the Go edition's name
    """A client from a JSON config (the Go edition's, which is this package's: see the README).

    Raises:
        ConfigError: invalid JSON, a bad value or an unknown key (named).
    """
    if isinstance(config_json, str):
        try:
            cfg = json.loads(config_json)
        except json.JSONDecodeError as e:
            from .errors import ConfigError

            raise ConfigError(f"GetClientFromJSON: invalid JSON: {e}") from e
    else:
        cfg = dict(config_json)
    return GoClient(cfg)


__all__ = [
    "GetClient",
    "GetClientFromJSON",
    "GoClient",
    "ImagePayload",
    "LatentPayload",
    "Sample",
    "SourceTypeDB",
    "SourceTypeFileSystem",
    "SourceTypeWebDataset",
]
