"""Metadata value types: inference, normalization and a JSON codec.

A metadata field has one of six types, fixed by the first value ever written to it:

========== ======================================== ==========================
type       Python values accepted                   stored in column
========== ======================================== ==========================
``int``    ``int`` and numpy integers (not bool)    ``value_int`` (64-bit)
``float``  ``float``, numpy floats; ``int`` widens  ``value_float`` (double)
``bool``   ``bool``, ``numpy.bool_``                ``value_bool``
``str``    ``str``                                  ``value_str``
``datetime`` ``datetime.datetime`` (pandas too)     ``value_datetime`` (UTC)
``bytes``  ``bytes``, ``bytearray``, ``memoryview`` ``value_blob_hash`` (sha256)
========== ======================================== ==========================

Datetimes are stored in UTC: timezone-aware values are converted, naive values are taken
to be UTC already. They are returned timezone-aware (UTC).

Values every backend stores alike (see :func:`storage_problem`): ints within 64 bits, floats
other than NaN (infinities are fine), str without NUL characters.
"""

from __future__ import annotations

import base64
import datetime as _dt
import math
import numbers
from typing import Any

FIELD_TYPES: tuple[str, ...] = ("int", "float", "bool", "str", "datetime", "bytes")

#: Column of the metadata table holding each type's values.
VALUE_COLUMN: dict[str, str] = {
    "int": "value_int",
    "float": "value_float",
    "bool": "value_bool",
    "str": "value_str",
    "datetime": "value_datetime",
    "bytes": "value_blob_hash",
}

#: Names of the automatic per-datapoint fields (columns of the datapoints table, plus derived
#: ones). They can be queried like metadata fields but never written as metadata.
BUILTIN_FIELDS: tuple[str, ...] = (
    "path",
    "size",
    "width",
    "height",
    "format",
    "created_at",
    "datapoint_id",
    "short_edge",
    "pixel_count",
)

MAX_FIELD_NAME = 255


class QueryError(ValueError):
    """A query the engine refuses or the database could not run as asked: more conditions or
    deeper nesting than the limits, a statement over a database limit (SQLite's parser stack or
    expression depth, PostgreSQL's program limits), or one stopped by the statement timeout. The
    server answers it with a 400 and its message."""
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def _is_numpy_bool(value: Any) -> bool:
    dtype = getattr(value, "dtype", None)
    return dtype is not None and getattr(dtype, "kind", "") == "b" and getattr(value, "ndim", 1) == 0


def infer_type(value: Any) -> str:
    """Return the field type (one of :data:`FIELD_TYPES`) of a Python value.

    Raises:
        TypeError: the value has no metadata type (e.g. a list, a dict, ``None``).
    """
    if isinstance(value, bool) or _is_numpy_bool(value):
        return "bool"
    if isinstance(value, numbers.Integral):
        return "int"
    if isinstance(value, numbers.Real):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, _dt.datetime):
        return "datetime"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes"
    raise TypeError(f"unsupported metadata value type {type(value).__name__}")


def to_utc(value: _dt.datetime) -> _dt.datetime:
    """Return ``value`` as an aware UTC datetime (naive values are taken to be UTC)."""
    to_py = getattr(value, "to_pydatetime", None)  # pandas.Timestamp
    if to_py is not None:
        value = to_py()
    if value.tzinfo is None:
        return value.replace(tzinfo=_dt.timezone.utc)
    return value.astimezone(_dt.timezone.utc)


def normalize(value: Any, ftype: str) -> Any:
    """Convert ``value`` (of type ``infer_type(value)``) to the plain Python value stored for a
    field of type ``ftype``; ``int`` widens to ``float``.

    Raises:
        TypeError: the value does not fit the field type.
    """
    vtype = infer_type(value)
    if vtype != ftype and not (vtype == "int" and ftype == "float"):
        raise TypeError(f"expected {ftype}, got {vtype}")
    if ftype == "bool":
        return bool(value)
    if ftype == "int":
        return int(value)
    if ftype == "float":
        return float(value)
    if ftype == "str":
        return str(value)
    if ftype == "datetime":
        return to_utc(value)
    return bytes(value)


def storage_problem(value: Any) -> str | None:
    """Why a normalized value (see :func:`normalize`) cannot be stored or compared the same way
    on SQLite and PostgreSQL, or None when it can: an int outside 64 bits, a NaN float (SQLite
    stores NULL, PostgreSQL NaN), a str with a NUL character (PostgreSQL refuses it)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        return f"int {value} is outside the 64-bit range"
    if isinstance(value, float) and math.isnan(value):
        return "NaN cannot be stored (None removes a value)"
    if isinstance(value, str) and "\x00" in value:
        return "str values cannot contain NUL characters"
    return None


def has_nul(name: Any) -> bool:
    """True for a str containing a NUL character: such a name can never have been stored
    (PostgreSQL refuses NUL in text), so look-ups treat it as absent."""
    return isinstance(name, str) and "\x00" in name


def check_name(kind: str, name: Any) -> str:
    """Validate the name of a datasource, dataset or token: a str of 1..255 characters without
    NUL.

    Raises:
        ValueError: anything else (the message names ``kind``).
    """
    if not isinstance(name, str) or not 0 < len(name) <= 255 or "\x00" in name:
        raise ValueError(f"invalid {kind} name {name!r} (1..255 characters, no NUL)")
    return name


def is_missing(value: Any) -> bool:
    """True for ``None``, NaN floats, ``pandas.NA`` and ``pandas.NaT`` (used for DataFrames)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    name = type(value).__name__
    return name in ("NAType", "NaTType")


def encode_json(value: Any) -> Any:
    """Encode a query or metadata value for JSON: datetimes become ``{"$datetime": iso}``, bytes
    ``{"$bytes": base64}``; other supported values are returned unchanged.

    Raises:
        TypeError: unsupported value type.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    vtype = infer_type(value)
    if vtype == "datetime":
        return {"$datetime": to_utc(value).isoformat()}
    if vtype == "bytes":
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    return normalize(value, vtype)


def decode_json(value: Any) -> Any:
    """Inverse of :func:`encode_json`.

    Raises:
        ValueError: malformed ``$datetime``/``$bytes`` object or an unsupported JSON value.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict) and len(value) == 1:
        if "$datetime" in value and isinstance(value["$datetime"], str):
            try:
                return to_utc(_dt.datetime.fromisoformat(value["$datetime"]))
            except ValueError as e:
                raise ValueError(f"invalid $datetime {value['$datetime']!r}") from e
        if "$bytes" in value and isinstance(value["$bytes"], str):
            try:
                return base64.b64decode(value["$bytes"], validate=True)
            except ValueError as e:
                raise ValueError("invalid $bytes (base64 expected)") from e
    raise ValueError(f"unsupported JSON value {value!r}")


def check_field_name(name: Any, *, writing: bool = False) -> str:
    """Validate a field name: a non-empty str of at most 255 characters without NUL. When
    ``writing``, names of builtin fields (:data:`BUILTIN_FIELDS`) are refused.

    Raises:
        TypeError: not a str.
        ValueError: empty, too long, contains NUL, or a builtin name when writing.
    """
    if not isinstance(name, str):
        raise TypeError(f"field names are str, got {type(name).__name__}")
    if not name or len(name) > MAX_FIELD_NAME or "\x00" in name:
        raise ValueError(f"invalid field name {name!r} (1..{MAX_FIELD_NAME} characters, no NUL)")
    if writing and name in BUILTIN_FIELDS:
        raise ValueError(f"field name {name!r} is reserved for an automatic field")
    return name
