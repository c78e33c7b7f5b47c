"""Run queries: one SQL statement per page (datapoints + their metadata), keyset paging.

Pages are ordered by datapoint id and continue after a cursor (the last id seen), so rows
inserted while paging never shift a page (new datapoints get larger ids). Random order uses a
seeded bijection of the id (``((id + seed) mod 2^32) * 1103515245 mod 2^32``) with the cursor
``"<key>.<id>"``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .db import Engine, datapoints, datasources, fields, metadata_values
from .db import log as _log
from .query import Query, check_limits
from .sql import SqlContext, compile_query
from .values import INT64_MAX, INT64_MIN, has_nul

_MOD = 4294967296
_MULT = 1103515245

# the aliases every page statement uses, built once (building them is most of the Python cost of
# a small page); their column collections are filled here, before any thread shares them
_DP, _SRC, _M, _F, _F2 = (
    t.alias(n)
    for t, n in ((datapoints, "dp"), (datasources, "src"), (metadata_values, "m"), (fields, "f"), (fields, "f2"))
)
for _alias in (_DP, _SRC, _M, _F, _F2):
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
        columns: datapoint columns to fetch besides ``id`` and ``datasource_id`` (of
            :data:`POINT_COLUMNS`; None: all). Fewer columns, a cheaper page.
        timeout_s: stop the statement after this many seconds with a
            :class:`~datago.engine.values.QueryError` (None: no limit; see :meth:`Engine.read`).
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
    columns: tuple[str, ...] | None = None
    timeout_s: float | None = None


#: the datapoint columns a page can return besides ``id`` and ``datasource_id``
POINT_COLUMNS = ("source", "path", "size", "width", "height", "format", "created_at")


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


def _filtered(
    engine: Engine, spec: PageSpec, after_id: int | None = None, columns: tuple[str, ...] = ()
) -> tuple[sa.Select[Any], Any, Any]:
    """The statement selecting ``id``, ``datasource_id``, ``columns`` (of :data:`POINT_COLUMNS`)
    and, with a seed, the random order key ``rk`` of the datapoints of ``spec`` (cursor and order
    not applied), only those with an id above ``after_id`` when given; its datapoints alias and
    the random order key (None without seed)."""
    dp, src = _DP, _SRC
    ctx = SqlContext(dp, engine.dialect, spec.as_of_us, after_id)
    rand_key = None
    if spec.seed is not None:
        rand_key = (((dp.c.id + spec.seed % _MOD) % _MOD) * _MULT) % _MOD
    cols = [dp.c.id, dp.c.datasource_id]
    cols += [src.c.name.label("source") if c == "source" else dp.c[c] for c in columns]
    if rand_key is not None:
        cols.append(rand_key.label("rk"))
    stmt = sa.select(*cols)
    if "source" in columns or spec.source_names is not None or spec.exclude_source_names:
        stmt = stmt.select_from(dp.join(src, src.c.id == dp.c.datasource_id))
    else:
        stmt = stmt.select_from(dp)
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
    if after_id is not None:
        where.append(dp.c.id > after_id)
    if spec.partitions is not None:
        count, index = spec.partitions
        if count > 1:
            where.append(dp.c.id % count == index)
    if spec.query is not None:
        check_limits(spec.query)
        where.append(compile_query(spec.query, ctx))
    return stmt.where(*where), dp, rand_key


def count(engine: Engine, spec: PageSpec) -> int:
    """Number of datapoints matching ``spec`` (limit, cursor and order ignored).

    Raises:
        QueryError: a query over the limits, refused by the database, or over ``spec.timeout_s``.
    """
    stmt, _, _ = _filtered(engine, PageSpec(**{**spec.__dict__, "seed": None}))
    with engine.read(spec.timeout_s) as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(stmt.subquery())).scalar_one())


@dataclass(slots=True)
class RawPage:
    """A page as the statement returned it.

    Attributes:
        rows: tuples ``(id, datasource_id, field_id, value_int, value_float, value_str,
            value_bool, value_datetime, value_blob_hash, *columns[, rk])``, one per (datapoint,
            metadata value) in no particular order (``field_id`` None for a datapoint without
            values); rows of datapoints not in ``ids`` are to be skipped. Value columns are raw
            driver values: see :func:`value_of`.
        ids: the page's datapoint ids in page order.
        fields: field id -> ``(name, type)`` for the fields of the rows.
        columns: index in the rows of each datapoint column returned (of :data:`POINT_COLUMNS`,
            and ``rk`` in random order).
        next_cursor: cursor of the next page (None on the last page or without limit).
    """

    rows: list[Any]
    ids: list[int]
    fields: dict[int, tuple[str, str]]
    columns: dict[str, int]
    next_cursor: str | None


#: index of the value column in a page row, by field type
VALUE_INDEX = {t: 3 + i for i, t in enumerate(("int", "float", "str", "bool", "datetime", "bytes"))}
#: index of the first datapoint column (see :attr:`RawPage.columns`)
FIRST_COLUMN = 9


def page_rows(engine: Engine, spec: PageSpec) -> RawPage:
    """Run the page statement (one SQL statement) and return its raw rows.

    The statement returns each datapoint's columns with each of its values (one row per value,
    the value's field as an id) and, after them, one row per field of the page's datasources
    (``id`` NULL, name and type in the ``value_str`` and ``value_blob_hash`` columns): fewer
    cells than names and types on every row, and each cell costs as much as the database work.

    Raises:
        ValueError: malformed cursor.
        QueryError: a query over the limits, refused by the database, or over ``spec.timeout_s``.
    """
    columns = POINT_COLUMNS if spec.columns is None else tuple(c for c in POINT_COLUMNS if c in spec.columns)
    if spec.limit is not None and spec.limit <= 0:
        return RawPage([], [], {}, {c: FIRST_COLUMN + i for i, c in enumerate(columns)}, None)
    random = spec.seed is not None
    key = last = None
    if spec.cursor:
        key, last = parse_cursor(spec.cursor, random)
    # in id order the cursor is a bound on the id, which the filters' subqueries repeat
    stmt, dp, rand_key = _filtered(engine, spec, None if random else last, columns)
    if random and last is not None:
        stmt = stmt.where(sa.or_(rand_key > key, sa.and_(rand_key == key, dp.c.id > last)))
    stmt = stmt.order_by(rand_key, dp.c.id) if random else stmt.order_by(dp.c.id)
    if spec.limit is not None:
        stmt = stmt.limit(spec.limit + 1)
    page = stmt.cte("page")
    extra = [page.c[c] for c in columns]
    if random:
        extra.append(page.c.rk)
    # the statement is not ordered (sorting the joined rows costs more than sorting the ids in
    # Python); rows of one datapoint are grouped by the caller
    if spec.select is not None and not spec.select:  # no metadata wanted: no join at all
        out: Any = sa.select(page.c.id, page.c.datasource_id, *(sa.null() for _ in range(7)), *extra)
    else:
        m, f = _M, _F
        m_on = [m.c.datapoint_id == page.c.id, SqlContext(dp, engine.dialect, spec.as_of_us).current(m)]
        described = f.c.datasource_id.in_(sa.select(page.c.datasource_id))
        if spec.select is not None:
            m_on.append(m.c.field_id.in_(sa.select(_F2.c.id).where(_F2.c.name.in_(spec.select))))
            described = sa.and_(described, f.c.name.in_(spec.select))
        values = sa.select(
            page.c.id,
            page.c.datasource_id,
            m.c.field_id,
            m.c.value_int,
            m.c.value_float,
            m.c.value_str,
            # raw driver values, converted only where the field type needs it (value_of)
            sa.type_coerce(m.c.value_bool, sa.Integer()),
            sa.type_coerce(m.c.value_datetime, sa.String()),
            m.c.value_blob_hash,
            *extra,
        ).select_from(page.outerjoin(m, sa.and_(*m_on)))
        nulls = [sa.null() for _ in extra]
        fields_of = sa.select(
            sa.null(), sa.null(), f.c.id, sa.null(), sa.null(), f.c.name, sa.null(), sa.null(), f.c.type, *nulls
        ).where(described)
        out = sa.union_all(values, fields_of)

    with engine.read(spec.timeout_s) as conn:
        rows = _fetch_tuples(conn.execute(out))
    # the field rows: at the end (the order of UNION ALL's parts, which is not guaranteed)
    n = len(rows)
    while n and rows[n - 1][0] is None:
        n -= 1
    fields_by_id = {r[2]: (r[5], r[8]) for r in rows[n:]}
    del rows[n:]
    id_set = {row[0] for row in rows}
    if None in id_set:  # field rows among the others
        fields_by_id.update((r[2], (r[5], r[8])) for r in rows if r[0] is None)
        rows = [r for r in rows if r[0] is not None]
        id_set.discard(None)
    index = {c: FIRST_COLUMN + i for i, c in enumerate(columns)}
    if random:
        rk = index["rk"] = FIRST_COLUMN + len(columns)
        keys = {row[0]: row[rk] for row in rows}
        ids = sorted(id_set, key=lambda i: (keys[i], i))
    else:
        ids = sorted(id_set)
    next_cursor = None
    if spec.limit is not None and len(ids) > spec.limit:
        ids = ids[: spec.limit]
        last = ids[-1]
        next_cursor = f"{keys[last]}.{last}" if random else str(last)
    return RawPage(rows, ids, fields_by_id, index, next_cursor)


def value_of(row: Any, ftype: str) -> Any:
    """The Python value of a page row's metadata value of type ``ftype``."""
    value = row[VALUE_INDEX[ftype]]
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
    start = time.perf_counter()
    raw = page_rows(engine, dataclasses.replace(spec, columns=None))
    fields_by_id = raw.fields
    c = FIRST_COLUMN
    by_id: dict[int, Record] = dict.fromkeys(raw.ids)  # type: ignore[arg-type]
    for row in raw.rows:
        rid = row[0]
        rec = by_id.get(rid, False)
        if rec is False:  # the extra datapoint that only tells there is a next page
            continue
        if rec is None:
            rec = by_id[rid] = Record(rid, row[1], *row[c : c + len(POINT_COLUMNS)], {})  # type: ignore[misc]
        field = fields_by_id.get(row[2])
        if field is not None:
            name, ftype = field
            rec.values[name] = (ftype, value_of(row, ftype))
    if _log.isEnabledFor(logging.DEBUG):
        _log.debug(
            "query %s (sources %s, select %s, as_of %s, limit %s): %d datapoints in %.2f ms",
            None if spec.query is None else spec.query.to_json(),
            spec.source_ids if spec.source_ids is not None else spec.source_names,
            spec.select,
            spec.as_of_us,
            spec.limit,
            len(by_id),
            (time.perf_counter() - start) * 1000,
        )
    return list(by_id.values()), raw.next_cursor
