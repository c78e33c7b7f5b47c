"""The dataroom image API on top of the engine: query parameters -> :class:`PageSpec`, and
datapoints -> the JSON results datago's ``db`` source reads (rendered by
:mod:`datago.engine.render`).

Conventions mapping engine data to dataroom results:

- ``source``: the datasource name; ``id``: the datapoint id as a string.
- ``tags``: the metadata field ``tags``, a comma-separated str (written from a list or a str,
  normalized to ``a,b,c``); returned as a list of str.
- ``duplicate_state``: the int metadata field ``duplicate_state``.
- ``coca_embedding``: the metadata field ``coca_embedding``: bytes (float32 little-endian) or a
  str holding a JSON list of numbers; returned as ``{"vector": [...]}``.
- latents: str metadata fields ``latent:<type>`` (and ``mask:<type>`` for masks) holding the path
  of a file under the datasource root; returned as ``latents: [{"latent_type", "file_direct_url",
  "is_mask"}]``.
- ``attributes``: every other metadata field; datetimes as ISO-8601 strings, blobs as signed URLs.
- ``image_direct_url`` / ``file_direct_url``: absolute HMAC-signed expiring URLs served by the
  same server (``/files/...``) for a local root; the file's own URL for an http root.
"""

from __future__ import annotations

import datetime as _dt
import math
import secrets
from collections.abc import Mapping
from typing import Any

from .executor import PageSpec
from .query import And, Condition, Or, Query, conditions
from .render import LATENT_PREFIX, MASK_PREFIX, RESULT_FIELDS, SPECIAL_FIELDS, Renderer, csv_list, point_columns
from .values import INT64_MAX, INT64_MIN

__all__ = ["ApiError", "Renderer", "csv_list", "point_columns", "spec_from_params", "wanted_fields"]

MAX_PAGE_SIZE = 2000
DEFAULT_PAGE_SIZE = 100
IMAGE_PARAMS = (
    "page_size",
    "cursor",
    "fields",
    "sources",
    "sources__ne",
    "tags",
    "tags__all",
    "tags__ne",
    "tags__ne_all",
    "tags__empty",
    "attributes",
    "has_attributes",
    "lacks_attributes",
    "has_masks",
    "lacks_masks",
    "has_latents",
    "lacks_latents",
    "return_latents",
    "short_edge__gte",
    "short_edge__lte",
    "pixel_count__gte",
    "pixel_count__lte",
    "duplicate_state",
    "partitions_count",
    "partition",
    "query",
    "as_of",
    "seed",
)
_ATTR_OPS = {
    "eq": "eq",
    "ne": "ne",
    "gt": "gt",
    "gte": "ge",
    "lt": "lt",
    "lte": "le",
    "contains": "contains",
    "icontains": "icontains",
}


class ApiError(Exception):
    """An error answered as ``{"error": message, "status": status}`` with that HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def int_param(
    params: Mapping[str, Any], name: str, default: int | None = None, minimum: int | None = None
) -> int | None:
    """The integer parameter ``name`` (``default`` when absent or empty).

    Raises:
        ApiError: 400 when it is not an integer, is below ``minimum`` or outside 64 bits.
    """
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise TypeError  # JSON bodies: true or 2.5 are not integers
        value = int(raw)
    except (TypeError, ValueError, OverflowError):
        raise ApiError(400, f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ApiError(400, f"{name} must be >= {minimum}, got {value}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise ApiError(400, f"{name} is outside the 64-bit integer range")
    return value


def bool_param(params: Mapping[str, Any], name: str) -> bool | None:
    """The boolean parameter ``name`` (``true``/``false``, ``1``/``0``, any case; None when
    absent or empty).

    Raises:
        ApiError: 400 for another value.
    """
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise ApiError(400, f"{name} must be true or false, got {raw!r}")


def lenient_condition(name: str, op: str, raw: str) -> Query:
    """A condition on ``name`` for a value given as text: matches the field whatever its type
    (str, or int/float/bool/datetime when the text parses as one)."""
    if op in ("contains", "icontains"):
        return Condition(name, op, raw)
    if raw in ("null", "None") and op in ("eq", "ne"):
        return Condition(name, op, None)
    cands: list[Query] = [Condition(name, op, raw)]
    try:
        cands.append(Condition(name, op, int(raw)))
    except ValueError:
        try:
            f = float(raw)
            if math.isfinite(f):
                cands.append(Condition(name, op, f))
        except ValueError:
            pass
    if raw.lower() in ("true", "false"):
        cands.append(Condition(name, op, raw.lower() == "true"))
    if "-" in raw and len(raw) >= 10:
        try:
            cands.append(Condition(name, op, _dt.datetime.fromisoformat(raw)))
        except ValueError:
            pass
    return Or.of(*cands)


def parse_attributes(text: str) -> list[Query]:
    """``name__op:value,...`` (ops eq (default), ne, gt, gte, lt, lte, contains, icontains)."""
    out: list[Query] = []
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, raw = item.partition(":")
        if not sep or not key:
            raise ApiError(400, f"attributes filter {item!r} is not name__op:value")
        name, op = key, "eq"
        if "__" in key:
            base, _, suffix = key.rpartition("__")
            if suffix in _ATTR_OPS and base:
                name, op = base, _ATTR_OPS[suffix]
        out.append(lenient_condition(name, op, raw))
    return out


def _has_latent(t: str) -> Query:
    return Or.of(Condition(LATENT_PREFIX + t, "is_not_null"), Condition(MASK_PREFIX + t, "is_not_null"))


def _lacks_latent(t: str) -> Query:
    return Condition(LATENT_PREFIX + t, "is_null") & Condition(MASK_PREFIX + t, "is_null")


def filters_from_params(params: Mapping[str, Any]) -> list[Query]:
    """The conditions of the dataroom filter parameters.

    Raises:
        ApiError: 400 for a malformed parameter.
    """
    conds: list[Query] = []
    try:
        tags = csv_list(params.get("tags"))
        if tags:
            conds.append(Or.of(*(Condition("tags", "has_tag", t) for t in tags)))
        conds += [Condition("tags", "has_tag", t) for t in csv_list(params.get("tags__all"))]
        conds += [~Condition("tags", "has_tag", t) for t in csv_list(params.get("tags__ne"))]
        ne_all = csv_list(params.get("tags__ne_all"))
        if ne_all:  # not all of them
            conds.append(~And.of(*(Condition("tags", "has_tag", t) for t in ne_all)))
        empty = bool_param(params, "tags__empty")
        if empty is not None:
            no_tags = Or.of(Condition("tags", "is_null"), Condition("tags", "eq", ""))
            conds.append(no_tags if empty else ~no_tags)
        if params.get("attributes"):
            conds += parse_attributes(params["attributes"])
        conds += [Condition(a, "is_not_null") for a in csv_list(params.get("has_attributes"))]
        conds += [Condition(a, "is_null") for a in csv_list(params.get("lacks_attributes"))]
        conds += [Condition(MASK_PREFIX + t, "is_not_null") for t in csv_list(params.get("has_masks"))]
        conds += [Condition(MASK_PREFIX + t, "is_null") for t in csv_list(params.get("lacks_masks"))]
        conds += [_has_latent(t) for t in csv_list(params.get("has_latents"))]
        conds += [_lacks_latent(t) for t in csv_list(params.get("lacks_latents"))]
    except (TypeError, ValueError) as e:
        raise ApiError(400, str(e)) from None
    for key, builtin, op in (
        ("short_edge__gte", "short_edge", "ge"),
        ("short_edge__lte", "short_edge", "le"),
        ("pixel_count__gte", "pixel_count", "ge"),
        ("pixel_count__lte", "pixel_count", "le"),
    ):
        v = int_param(params, key)
        if v is not None:
            conds.append(Condition(builtin, op, v))
    dup = params.get("duplicate_state")
    if dup not in (None, ""):
        if dup in ("None", "none", "null", "0"):
            conds.append(Or.of(Condition("duplicate_state", "is_null"), Condition("duplicate_state", "eq", 0)))
        else:
            conds.append(Condition("duplicate_state", "eq", int_param(params, "duplicate_state")))
    if params.get("query"):
        raw = params["query"]
        try:
            conds.append(Query.from_json(raw) if isinstance(raw, str) else Query.from_dict(raw))
        except (TypeError, ValueError) as e:
            raise ApiError(400, f"invalid query: {e}") from None
    return conds


def paging_from_params(params: Mapping[str, Any], spec: PageSpec) -> None:
    """Fill page size, cursor and partitions of ``spec`` from parameters.

    Raises:
        ApiError: 400 for page_size outside 1..2000 or a bad partition.
    """
    size = int_param(params, "page_size", DEFAULT_PAGE_SIZE, minimum=1)
    assert size is not None
    if size > MAX_PAGE_SIZE:
        raise ApiError(400, f"page_size must be <= {MAX_PAGE_SIZE}, got {size}")
    spec.limit = size
    cursor = params.get("cursor")
    spec.cursor = None if cursor is None or cursor == "" else str(cursor)  # JSON bodies: any type
    count = int_param(params, "partitions_count", minimum=1)
    index = int_param(params, "partition", minimum=0)
    if count is not None or index is not None:
        if count is None or index is None:
            raise ApiError(400, "partitions_count and partition go together")
        if index >= count:
            raise ApiError(400, f"partition must be < partitions_count ({count}), got {index}")
        spec.partitions = (count, index)
    as_of = int_param(params, "as_of")
    if as_of is not None:
        spec.as_of_us = as_of


def spec_from_params(params: Mapping[str, Any], random: bool = False) -> PageSpec:
    """A :class:`PageSpec` from ``GET /api/images/`` parameters.

    Raises:
        ApiError: 400 for an unknown or malformed parameter.
    """
    unknown = sorted(set(params) - set(IMAGE_PARAMS))
    if unknown:
        raise ApiError(400, f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(IMAGE_PARAMS)}")
    conds = filters_from_params(params)
    spec = PageSpec(
        source_names=csv_list(params.get("sources")) or None,
        exclude_source_names=csv_list(params.get("sources__ne")) or None,
        query=conditions(conds),
    )
    paging_from_params(params, spec)
    if random:
        seed = int_param(params, "seed", minimum=0)
        spec.seed = seed if seed is not None else secrets.randbelow(2**31)
    fields = wanted_fields(params.get("fields"))
    if "attributes" not in fields and "latents" not in fields:
        spec.select = [f for f in SPECIAL_FIELDS if f in fields]
    spec.columns = point_columns(fields)
    return spec


def wanted_fields(text: str | None) -> set[str]:
    """Result keys asked for with ``fields`` (all when absent; ``id`` always).

    Raises:
        ApiError: 400 for an unknown key.
    """
    if not text:
        return set(RESULT_FIELDS)
    want = set(csv_list(text)) | {"id"}
    bad = sorted(want - set(RESULT_FIELDS))
    if bad:
        raise ApiError(400, f"unknown field(s) {', '.join(bad)}; known: {', '.join(RESULT_FIELDS)}")
    return want
