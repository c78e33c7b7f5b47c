"""Storage: the SQL schema (SQLAlchemy Core) and the time columns' unit.

Tables (all timestamps are integers, microseconds since the UNIX epoch, UTC):

- ``datasources(id, name, root, created_at)``
- ``datapoints(id, datasource_id, path, size, width, height, format, created_at)``: one row per
  file; ``id`` only grows (keyset paging cursor), ``(datasource_id, path)`` is unique.
- ``fields(id, datasource_id, name, type, created_at)``: metadata field names and their fixed
  type. Queries look field names up here, as bound parameters.
- ``metadata_values(id, datapoint_id, field_id, value_int, value_float, value_str, value_bool,
  value_datetime, value_blob_hash, valid_from, valid_to)``: entity-attribute-value rows with
  history. A row is never updated except to close it (set ``valid_to``); the current value has
  ``valid_to IS NULL``.
- ``datasets(id, name, datasource_id, query, created_at)``: saved queries (JSON).
- ``api_tokens(id, name, key_hash, read_only, created_at, revoked_at)``: server API keys, stored
  as sha256 of the key.
- ``settings(key, value)``: e.g. the HMAC secret that signs file URLs.
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
from typing import Any

import sqlalchemy as sa

from .values import to_utc


class UTCDateTime(sa.types.TypeDecorator):
    """DateTime stored naive in UTC, returned aware (UTC). Naive inputs are taken as UTC."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        return to_utc(value).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):  # pragma: no cover - defensive, sqlite returns datetime
            value = _dt.datetime.fromisoformat(value)
        return value.replace(tzinfo=_dt.timezone.utc)


_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

schema = sa.MetaData()

datasources = sa.Table(
    "datasources",
    schema,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("root", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sqlite_autoincrement=True,
)

datapoints = sa.Table(
    "datapoints",
    schema,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("datasource_id", sa.Integer, sa.ForeignKey("datasources.id"), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger),
    sa.Column("width", sa.Integer),
    sa.Column("height", sa.Integer),
    sa.Column("format", sa.String(32)),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("datasource_id", "path", name="uq_datapoints_source_path"),
    sa.Index("ix_datapoints_source_id", "datasource_id", "id"),
    sqlite_autoincrement=True,
)

fields = sa.Table(
    "fields",
    schema,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("datasource_id", sa.Integer, sa.ForeignKey("datasources.id"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("datasource_id", "name", name="uq_fields_source_name"),
    sqlite_autoincrement=True,
)

metadata_values = sa.Table(
    "metadata_values",
    schema,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("datapoint_id", _Id, sa.ForeignKey("datapoints.id"), nullable=False),
    sa.Column("field_id", sa.Integer, sa.ForeignKey("fields.id"), nullable=False),
    sa.Column("value_int", sa.BigInteger),
    sa.Column("value_float", sa.Double),
    sa.Column("value_str", sa.Text),
    sa.Column("value_bool", sa.Boolean),
    sa.Column("value_datetime", UTCDateTime),
    sa.Column("value_blob_hash", sa.String(64)),
    sa.Column("valid_from", sa.BigInteger, nullable=False),
    sa.Column("valid_to", sa.BigInteger),
    # current values of a datapoint (result pages, EXISTS filters) and history look-ups
    sa.Index("ix_metadata_values_dp_field", "datapoint_id", "field_id", "valid_to"),
    # value filters and "which datapoints have field X"
    sa.Index("ix_metadata_values_field_int", "field_id", "value_int"),
    sa.Index("ix_metadata_values_field_float", "field_id", "value_float"),
)

datasets = sa.Table(
    "datasets",
    schema,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("datasource_id", sa.Integer, sa.ForeignKey("datasources.id"), nullable=False),
    sa.Column("query", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

api_tokens = sa.Table(
    "api_tokens",
    schema,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("read_only", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("revoked_at", sa.BigInteger),
)

settings = sa.Table(
    "settings",
    schema,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_clock_lock = threading.Lock()
_clock_last = 0


def now_us() -> int:
    """Current time in microseconds since the UNIX epoch; strictly increasing in this process."""
    global _clock_last
    with _clock_lock:
        t = time.time_ns() // 1000
        if t <= _clock_last:
            t = _clock_last + 1
        _clock_last = t
        return t


def to_us(when: _dt.datetime | float | int) -> int:
    """Convert a point in time to microseconds since the epoch.

    Args:
        when: an aware ``datetime``, a naive ``datetime`` (taken as UTC, as query values and
            metadata take it) or UNIX seconds (int or float).

    Raises:
        TypeError: another type.
        ValueError: UNIX seconds that are not finite or too far from 1970 (beyond 64-bit µs).
    """
    if isinstance(when, _dt.datetime):
        return (to_utc(when) - _EPOCH) // _dt.timedelta(microseconds=1)
    if isinstance(when, (int, float)) and not isinstance(when, bool):
        seconds = float(when)
        if not abs(seconds) < 9.2e12:  # also NaN
            raise ValueError(f"UNIX time {when!r} is out of range")
        return round(seconds * 1_000_000)
    raise TypeError(f"expected a datetime or UNIX seconds, got {type(when).__name__}")


def from_us(us: int) -> _dt.datetime:
    """Microseconds since the epoch to an aware UTC datetime."""
    return _EPOCH + _dt.timedelta(microseconds=us)
