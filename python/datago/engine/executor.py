"""Run queries: one SQL statement per page (datapoints + their metadata), keyset paging.

Pages are ordered by datapoint id and continue after a cursor (the last id seen), so rows
inserted while paging never shift a page (new datapoints get larger ids). Random order uses a
seeded bijection of the id (``((id + seed) mod 2^32) * 1103515245 mod 2^32``) with the cursor
``"<key>.<id>"``.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .db import Engine, datapoints, datasources, fields, metadata_values
from .query import Query, SqlContext, compile_query
from .values import INT64_MAX, INT64_MIN, has_nul

_MOD = 4294967296
_MULT = 1103515245

# the aliases every page statement uses, built once (building them is most of the Python cost of
# a small page); their column collections are filled here, before any thread shares them
_DP, _SRC, _M, _F = (
    t.alias(n) for t, n in ((datapoints, "dp"), (datasources, "src"), (metadata_values, "m"), (fields, "f"))
)
for _alias in (_DP, _SRC, _M, _F):
    _alias.c  # noqa: B018


@dataclass
class PageSpec:
    """What to fetch.

    Attributes:
        source_ids: datasource ids to include (None: all).
        source_names: datasource names to include (None: all).
        exclude_source_names: datasource names to leave out.
        query: condition tree (None: everything).
        select: metadata fields to return (None: all, []: none).
        as_of_us: answer with the data as of this time (µs since epoch; None: now).
        limit: page size (None: no limit, no cursor returned).
        cursor: continue after this cursor (from a previous page).
        partitions: ``(count, index)``: only datapoints with ``id % count == index``.
        seed: random order with this seed (None: id order).
    """

    source_ids: list[int] | None = None
    source_names: list[str] | None = None
    exclude_source_names: list[str] | None = None
    query: Query | None = None
    select: list[str] | None = None
    as_of_us: int | None = None
    limit: int | None = None
    cursor: str | None = None
    partitions: tuple[int, int] | None = None
    seed: int | None = None


@dataclass(slots=True)
class Record:
    """One datapoint with its metadata: ``values`` maps field name to ``(type, value)``; blob
    values are the sha256 hex of the blob."""

    id: int
    datasource_id: int
    source: str
    path: str
    size: int | None
    width: int | None
    height: int | None
    format: str | None
    created_at: int
    values: dict[str, tuple[str, Any]]


def _datetime_from_db(value: Any) -> _dt.datetime:
    """A stored datetime (naive UTC; SQLite returns ISO text) as an aware UTC datetime."""
    if isinstance(value, str):
        value = _dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=_dt.timezone.utc)


def _fetch_tuples(result: Any) -> list[Any]:
    """All rows of a result as plain DBAPI tuples: for wide pages the per-row ``Row`` objects cost
    as much as the query. Only for statements whose columns need no result processing (the page
    statement coerces its bool/datetime columns to raw values)."""
    from sqlalchemy.engine.cursor import CursorFetchStrategy

    if type(result.cursor_strategy) is CursorFetchStrategy and result.cursor is not None:
        try:
            return result.cursor.fetchall()
        finally:
            result.close()
    return result.all()


def parse_cursor(cursor: str, random: bool) -> tuple[int, int]:
    """``(key, id)`` of a cursor (key 0 for id order).

    Raises:
        ValueError: malformed cursor.
    """
    try:
        if random:
            key_text, _, ident_text = str(cursor).partition(".")
            key, ident = int(key_text), int(ident_text)
        else:
            key, ident = 0, int(cursor)
    except ValueError:
        raise ValueError(f"invalid cursor {cursor!r}") from None
    if not (0 <= key < _MOD and INT64_MIN <= ident <= INT64_MAX):
        raise ValueError(f"invalid cursor {cursor!r}")
    return key, ident


def _filtered(engine: Engine, spec: PageSpec) -> tuple[sa.Select[Any], Any, Any]:
    dp, src = _DP, _SRC
    ctx = SqlContext(dp, engine.dialect, spec.as_of_us)
    rand_key = None
    if spec.seed is not None:
        rand_key = (((dp.c.id + spec.seed % _MOD) % _MOD) * _MULT) % _MOD
    cols = [
        dp.c.id,
        dp.c.datasource_id,
        src.c.name.label("source"),
        dp.c.path,
        dp.c.size,
        dp.c.width,
        dp.c.height,
        dp.c.format,
        dp.c.created_at,
    ]
    if rand_key is not None:
        cols.append(rand_key.label("rk"))
    stmt = sa.select(*cols).select_from(dp.join(src, src.c.id == dp.c.datasource_id))
    where = []
    if spec.source_ids is not None:
        where.append(dp.c.datasource_id.in_(spec.source_ids))
    # names with NUL were never stored (PostgreSQL refuses them even as parameters)
    if spec.source_names is not None:
        where.append(src.c.name.in_([n for n in spec.source_names if not has_nul(n)]))
    if spec.exclude_source_names:
        where.append(src.c.name.not_in([n for n in spec.exclude_source_names if not has_nul(n)]))
    if spec.as_of_us is not None:
        where.append(dp.c.created_at <= spec.as_of_us)
    if spec.partitions is not None:
        count, index = spec.partitions
        if count > 1:
            where.append(dp.c.id % count == index)
    if spec.query is not None:
        where.append(compile_query(spec.query, ctx))
    return stmt.where(*where), dp, rand_key


def count(engine: Engine, spec: PageSpec) -> int:
    """Number of datapoints matching ``spec`` (limit, cursor and order ignored)."""
    stmt, _, _ = _filtered(engine, PageSpec(**{**spec.__dict__, "seed": None}))
    with engine.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(stmt.subquery())).scalar_one())


@dataclass(slots=True)
class RawPage:
    """A page as the statement returned it: ``rows`` are tuples ``(id, datasource_id, source,
    path, size, width, height, format, created_at[, rk], name, type, value_int, value_float,
    value_str, value_bool, value_datetime, value_blob_hash)`` with one row per (datapoint,
    metadata value) in no particular order (``name`` None for a datapoint without values);
    ``ids`` are the page's datapoint ids in page order (rows of other ids are to be skipped);
    ``nb`` is the index of ``name``.
    """

    rows: list[Any]
    ids: list[int]
    nb: int
    next_cursor: str | None


#: offsets of the value columns after ``name`` and ``type``, by field type
VALUE_OFFSET = {t: 2 + i for i, t in enumerate(("int", "float", "str", "bool", "datetime", "bytes"))}


def page_rows(engine: Engine, spec: PageSpec) -> RawPage:
    """Run the page statement (one SQL statement) and return its raw rows.

    Raises:
        ValueError: malformed cursor.
    """
    if spec.limit is not None and spec.limit <= 0:
        return RawPage([], [], 0, None)
    stmt, dp, rand_key = _filtered(engine, spec)
    random = rand_key is not None
    if spec.cursor:
        key, last = parse_cursor(spec.cursor, random)
        if random:
            stmt = stmt.where(sa.or_(rand_key > key, sa.and_(rand_key == key, dp.c.id > last)))
        else:
            stmt = stmt.where(dp.c.id > last)
    stmt = stmt.order_by(rand_key, dp.c.id) if random else stmt.order_by(dp.c.id)
    if spec.limit is not None:
        stmt = stmt.limit(spec.limit + 1)
    page = stmt.subquery("page")
    # the outer statement is not ordered (sorting the wide joined rows costs more than sorting
    # the records in Python); rows of one datapoint are grouped below
    if spec.select is not None and not spec.select:  # no metadata wanted: no join at all
        out = sa.select(*page.c, *(sa.null() for _ in range(8))).select_from(page)
    else:
        m, f = _M, _F
        # flat LEFT JOINs: a nested (m JOIN f) would be materialized whole by SQLite
        m_on = sa.and_(m.c.datapoint_id == page.c.id, SqlContext(dp, engine.dialect, spec.as_of_us).current(m))
        f_on = [f.c.id == m.c.field_id]
        if spec.select is not None:
            f_on.append(f.c.name.in_(spec.select))
        joined = page.outerjoin(m, m_on).outerjoin(f, sa.and_(*f_on))
        out = sa.select(
            *page.c,
            f.c.name,
            f.c.type,
            m.c.value_int,
            m.c.value_float,
            m.c.value_str,
            # raw driver values, converted below only where the field type needs it
            sa.type_coerce(m.c.value_bool, sa.Integer()),
            sa.type_coerce(m.c.value_datetime, sa.String()),
            m.c.value_blob_hash,
        ).select_from(joined)

    nb = len(page.c)
    with engine.read() as conn:
        rows = _fetch_tuples(conn.execute(out))
    if random:
        keys = {row[0]: row[9] for row in rows}
        ids = sorted(keys, key=lambda i: (keys[i], i))
    else:
        ids = sorted({row[0] for row in rows})
    next_cursor = None
    if spec.limit is not None and len(ids) > spec.limit:
        ids = ids[: spec.limit]
        last = ids[-1]
        next_cursor = f"{keys[last]}.{last}" if random else str(last)
    return RawPage(rows, ids, nb, next_cursor)


def value_of(row: Any, nb: int, ftype: str) -> Any:
    """The Python value of a page row's metadata value of type ``ftype``."""
    value = row[nb + VALUE_OFFSET[ftype]]
    if ftype == "bool":
        return bool(value)
    if ftype == "datetime":
        return _datetime_from_db(value)
    return value


def fetch_page(engine: Engine, spec: PageSpec) -> tuple[list[Record], str | None]:
    """Fetch one page in one SQL statement.

    Returns:
        ``(records, next_cursor)`` in page order; ``next_cursor`` is None on the last page or
        without limit.

    Raises:
        ValueError: malformed cursor.
    """
    raw = page_rows(engine, spec)
    nb = raw.nb
    by_id: dict[int, Record] = {i: None for i in raw.ids}  # type: ignore[misc]
    for row in raw.rows:
        rid = row[0]
        rec = by_id.get(rid, False)
        if rec is False:  # the extra datapoint that only tells there is a next page
            continue
        if rec is None:
            rec = by_id[rid] = Record(rid, row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], {})
        name = row[nb]
        if name is not None:
            ftype = row[nb + 1]
            rec.values[name] = (ftype, value_of(row, nb, ftype))
    return list(by_id.values()), raw.next_cursor
