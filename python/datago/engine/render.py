"""The dataroom image API's results: engine records -> the JSON results datago's ``db`` source
reads (:class:`Renderer`); the result keys and how engine data maps to them are described in
:mod:`datago.engine.dataroom`."""

from __future__ import annotations

import json
import math
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any

from .executor import POINT_COLUMNS, VALUE_INDEX, RawPage, value_of
from .scan import file_url as http_file_url
from .scan import is_http
from .signing import Signer, blob_url, quote_path

RESULT_FIELDS = (
    "id",
    "source",
    "attributes",
    "image_direct_url",
    "latents",
    "tags",
    "coca_embedding",
    "duplicate_state",
    "path",
    "width",
    "height",
    "size",
    "format",
)
SPECIAL_FIELDS = ("tags", "duplicate_state", "coca_embedding")
LATENT_PREFIX = "latent:"
MASK_PREFIX = "mask:"


def csv_list(value: str | None) -> list[str]:
    """The non-empty, stripped items of a comma-separated parameter (``[]`` for None)."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _json_value(ftype: str, value: Any, blob: Callable[[str], str]) -> Any:
    if ftype == "datetime":
        return value.isoformat()
    if ftype == "bytes":
        return blob(value)
    if ftype == "float" and not math.isfinite(value):
        return None
    return value


def _vector(ftype: str, value: Any, read_blob: Callable[[str], bytes]) -> list[float] | None:
    try:
        if ftype == "bytes":
            data = read_blob(value)
            return list(struct.unpack(f"<{len(data) // 4}f", data[: len(data) // 4 * 4]))
        if ftype == "str":
            vec = json.loads(value)
            return [float(x) for x in vec]
    except (OSError, ValueError, TypeError):
        return None
    return None


_ATTRIBUTE, _SPECIAL, _LATENT = 0, 1, 2
#: result keys that are datapoint columns
_SIMPLE_KEYS = ("source", "path", "size", "width", "height", "format")


def point_columns(want: set[str]) -> tuple[str, ...]:
    """The datapoint columns (:attr:`PageSpec.columns`) the result keys ``want`` need."""
    need = {k for k in _SIMPLE_KEYS if k in want}
    if "image_direct_url" in want:
        need.add("path")
    return tuple(c for c in POINT_COLUMNS if c in need)


class Renderer:
    """Turns records into result dicts.

    Args:
        base_url: the server's public base URL, without trailing slash.
        secret: HMAC secret for signed URLs.
        roots: datasource id -> root.
        ttl: lifetime of signed URLs in seconds.
        read_blob: reads a blob by sha256 (for embeddings stored as blobs).
    """

    def __init__(
        self, base_url: str, secret: bytes, roots: Mapping[int, str], ttl: int, read_blob: Callable[[str], bytes]
    ) -> None:
        self.base_url = base_url
        self.secret = secret
        self.roots = roots
        self.exp = int(time.time()) + ttl
        self.read_blob = read_blob
        self._signers: dict[int, tuple[str, Signer | None]] = {}
        self._kinds: dict[str, int] = {}

    def _signer(self, ds_id: int) -> tuple[str, Signer | None]:
        """``(url prefix, signer)`` of datasource ``ds_id``'s files (no signer for an http root)."""
        entry = self._signers.get(ds_id)
        if entry is None:
            root = self.roots.get(ds_id, "")
            signer = None if is_http(root) else Signer(self.secret, "file", str(ds_id), self.exp)
            entry = self._signers[ds_id] = (f"{self.base_url}/files/{ds_id}/", signer)
        return entry

    def file_url(self, ds_id: int, path: str) -> str:
        """Absolute URL of a file of datasource ``ds_id`` (signed unless the root is http)."""
        prefix, signer = self._signer(ds_id)
        if signer is None:
            return http_file_url(self.roots[ds_id], path)
        return f"{prefix}{quote_path(path)}?exp={self.exp}&sig={signer(path)}"

    def blob_url(self, sha256: str) -> str:
        """Absolute signed URL of a blob."""
        return blob_url(self.base_url, self.secret, sha256, self.exp)

    def _kind(self, name: str) -> int:
        kind = self._kinds.get(name)
        if kind is None:
            if name in SPECIAL_FIELDS:
                kind = _SPECIAL
            elif name.startswith(LATENT_PREFIX) or name.startswith(MASK_PREFIX):
                kind = _LATENT
            else:
                kind = _ATTRIBUTE
            self._kinds[name] = kind
        return kind

    def render_page(self, raw: RawPage, want: set[str], return_latents: set[str] | None = None) -> list[dict[str, Any]]:
        """The result dicts of a raw page (see :func:`~datago.engine.executor.page_rows`) in page
        order, with the keys in ``want`` (``id`` always).

        Raises:
            KeyError: the page lacks a datapoint column ``want`` needs (see :func:`point_columns`).
        """
        cols = raw.columns
        simple = [(k, cols[k]) for k in _SIMPLE_KEYS if k in want]
        url = "image_direct_url" in want
        path_col = cols["path"] if url else 0
        attrs = "attributes" in want
        tags = "tags" in want
        dup = "duplicate_state" in want
        emb = "coca_embedding" in want
        latents = "latents" in want

        def shown(name: str, ftype: str, kind: int) -> bool:
            if kind == _ATTRIBUTE:
                return attrs
            if kind == _LATENT:
                return latents and ftype == "str"
            if name == "tags":
                return tags and ftype == "str"
            if name == "duplicate_state":
                return dup and ftype == "int"
            return emb

        # field id -> (name, type, kind, index of the value) for the fields shown
        described = {
            fid: (name, ftype, kind, VALUE_INDEX[ftype])
            for fid, (name, ftype) in raw.fields.items()
            if shown(name, ftype, kind := self._kind(name))
        }
        signer = self._signer
        exp = self.exp
        isfinite = math.isfinite
        out: dict[int, Any] = dict.fromkeys(raw.ids)
        for row in raw.rows:
            rid = row[0]
            d = out.get(rid, False)
            if d is False:  # the extra datapoint that only tells there is a next page
                continue
            if d is None:
                d = out[rid] = {"id": str(rid)}
                for k, i in simple:
                    d[k] = row[i]
                if url:
                    path = row[path_col]
                    prefix, sign = signer(row[1])
                    if sign is None:
                        d["image_direct_url"] = http_file_url(self.roots[row[1]], path)
                    else:
                        d["image_direct_url"] = f"{prefix}{quote_path(path)}?exp={exp}&sig={sign(path)}"
                if attrs:
                    d["attributes"] = {}
                if tags:
                    d["tags"] = []
                if dup:
                    d["duplicate_state"] = None
                if emb:
                    d["coca_embedding"] = None
                if latents:
                    d["latents"] = []
            field = described.get(row[2])
            if field is None:
                continue
            name, ftype, kind, vi = field
            v = row[vi]
            if kind == _ATTRIBUTE:
                if ftype == "float":
                    v = v if isfinite(v) else None
                elif ftype == "bool":
                    v = bool(v)
                elif ftype == "datetime":
                    v = value_of(row, ftype).isoformat()
                elif ftype == "bytes":
                    v = self.blob_url(v)
                d["attributes"][name] = v
            elif kind == _SPECIAL:
                if name == "tags":
                    d["tags"] = csv_list(v)
                elif name == "duplicate_state":
                    d["duplicate_state"] = v
                else:
                    vec = _vector(ftype, v, self.read_blob)
                    d["coca_embedding"] = None if vec is None else {"vector": vec}
            else:
                if name.startswith(LATENT_PREFIX):
                    ltype, is_mask = name[len(LATENT_PREFIX) :], False
                else:
                    ltype, is_mask = name[len(MASK_PREFIX) :], True
                if return_latents is None or ltype in return_latents:
                    d["latents"].append(
                        {"latent_type": ltype, "file_direct_url": self.file_url(row[1], v), "is_mask": is_mask}
                    )
        results = list(out.values())
        if latents:
            for d in results:
                if len(d["latents"]) > 1:
                    d["latents"].sort(key=lambda x: (x["latent_type"], x["is_mask"]))
        return results
