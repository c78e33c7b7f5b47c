"""Writes: register datapoints and write metadata, each call one transaction."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .db import Engine, chunks, datapoints, datasets, datasources, fields, metadata_values, now_us
from .scan import safe_relpath
from .values import VALUE_COLUMN, check_field_name, has_nul, infer_type, normalize, storage_problem

TAGS_FIELD = "tags"
BULK_ROWS = 5000  # refresh planner statistics after writing at least this many rows


def lock_datasource(conn: Connection, datasource_id: int) -> str:
    """Lock the datasource row for this transaction (PostgreSQL ``FOR UPDATE``; SQLite write
    transactions are already exclusive) and return its name.

    Raises:
        KeyError: the datasource does not exist (any more).
    """
    row = conn.execute(sa.select(datasources.c.name).where(datasources.c.id == datasource_id).with_for_update()).first()
    if row is None:
        raise KeyError(f"datasource id {datasource_id} does not exist")
    return str(row[0])


def delete_datasource(engine: Engine, datasource_id: int) -> None:
    """Delete a datasource with its datapoints, metadata history, fields and saved datasets
    (one transaction). Files and blobs are left alone.

    Raises:
        KeyError: the datasource does not exist (any more).
    """
    with engine.write() as conn:
        lock_datasource(conn, datasource_id)
        dp_ids = sa.select(datapoints.c.id).where(datapoints.c.datasource_id == datasource_id).scalar_subquery()
        conn.execute(sa.delete(metadata_values).where(metadata_values.c.datapoint_id.in_(dp_ids)))
        conn.execute(sa.delete(fields).where(fields.c.datasource_id == datasource_id))
        conn.execute(sa.delete(datapoints).where(datapoints.c.datasource_id == datasource_id))
        conn.execute(sa.delete(datasets).where(datasets.c.datasource_id == datasource_id))
        conn.execute(sa.delete(datasources).where(datasources.c.id == datasource_id))


def bulk_insert(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows with the same keys in batches. On PostgreSQL ``RETURNING`` makes
    SQLAlchemy send multi-row ``INSERT ... VALUES`` batches ("insertmanyvalues") instead of one
    statement per row (psycopg's executemany)."""
    stmt = sa.insert(table)
    if conn.dialect.name == "postgresql":
        stmt = stmt.returning(table.c.id)
    for chunk in chunks(rows, 5000):
        conn.execute(stmt, chunk)


def add_datapoints(engine: Engine, datasource_id: int, records: Iterable[Mapping[str, Any]]) -> int:
    """Register datapoints, skipping paths already registered.

    Args:
        records: mappings with ``path`` (str, relative to the root, ``/``-separated) and
            optionally ``size`` (bytes), ``width``, ``height`` (pixels), ``format`` (e.g. "JPEG").

    Returns:
        Number of datapoints added.

    Raises:
        KeyError: the datasource does not exist.
        ValueError: a record without a str ``path``, or a path that is not a valid relative
            datapoint path (see :func:`datago.engine.scan.safe_relpath`); nothing is written.
    """
    now = now_us()
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for r in records:
        path = r.get("path")
        if not isinstance(path, str) or not path:
            raise ValueError(f"datapoint record without a path: {dict(r)!r}")
        safe_relpath(path)  # ValueError naming the path, before anything is written
        if path in seen:
            continue
        seen.add(path)
        rows.append(
            {
                "datasource_id": datasource_id,
                "path": path,
                "size": r.get("size"),
                "width": r.get("width"),
                "height": r.get("height"),
                "format": r.get("format"),
                "created_at": now,
            }
        )
    if not rows:
        return 0
    with engine.write() as conn:
        lock_datasource(conn, datasource_id)
        existing = set(
            conn.execute(sa.select(datapoints.c.path).where(datapoints.c.datasource_id == datasource_id)).scalars()
        )
        rows = [r for r in rows if r["path"] not in existing]
        bulk_insert(conn, datapoints, rows)
    if len(rows) >= BULK_ROWS:
        engine.analyze(datapoints)
    return len(rows)


def _valid_path(path: str) -> bool:
    if has_nul(path):
        return False
    try:
        safe_relpath(path)
    except ValueError:
        return False
    return True


def fill_datapoints(engine: Engine, datasource_id: int, records: Iterable[Mapping[str, Any]]) -> int:
    """Set ``size``, ``width``, ``height`` and ``format`` of registered datapoints that have no
    ``size`` yet (registered by a metadata write before the scan saw their file).

    Args:
        records: mappings with ``path`` and the probed ``size`` (bytes), ``width``, ``height``
            (pixels), ``format``.

    Returns:
        Number of datapoints updated.

    Raises:
        KeyError: the datasource does not exist.
    """
    records = [r for r in records if isinstance(r.get("path"), str)]
    if not records:
        return 0
    updated = 0
    with engine.write() as conn:
        lock_datasource(conn, datasource_id)
        for r in records:
            updated += conn.execute(
                sa.update(datapoints)
                .where(
                    datapoints.c.datasource_id == datasource_id,
                    datapoints.c.path == r["path"],
                    datapoints.c.size.is_(None),
                )
                .values(size=r.get("size"), width=r.get("width"), height=r.get("height"), format=r.get("format"))
            ).rowcount
    return updated


def normalize_tags(value: Any) -> Any:
    """``tags`` values: a list/tuple/set of str or a comma-separated str become one
    comma-separated str without blanks or empty items; other values are returned unchanged."""
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [str(v).strip() for v in value]
    elif isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    else:
        return value
    return ",".join(dict.fromkeys(v for v in items if v))


def write_metadata(engine: Engine, datasource_id: int, updates: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
    """Write metadata in one transaction: all of it or nothing.

    Each update is ``(path, {field: value})``; later updates of the same path and field win.
    ``None`` removes a value. A new version is recorded only where the value changes; the
    previous version is kept with its ``valid_to`` set (time travel).

    Returns:
        Number of values changed (set or removed).

    Raises:
        TypeError: a value of an unsupported type, or of another type than its field's (the
            message names the field and the path). Nothing is written.
        ValueError: an invalid or reserved field name, or a value no backend stores alike (an
            int outside 64 bits, NaN, a str with NUL; the message names the field and the
            path). Nothing is written.
        KeyError: a path that is neither a datapoint of the datasource nor a valid relative
            datapoint path (see :func:`datago.engine.scan.safe_relpath`). Nothing is written.

    A valid path that is not registered yet (the scan has not seen the file, or it does not
    exist yet) becomes a datapoint without size, width, height and format; a later scan fills
    them in (see :func:`fill_datapoints`).
    """
    merged: dict[str, dict[str, Any]] = {}
    for path, values in updates:
        if not isinstance(path, str):
            raise TypeError(f"datapoint paths are str, got {type(path).__name__}")
        if not isinstance(values, Mapping):
            raise TypeError(f"metadata for {path!r} must be a mapping, got {type(values).__name__}")
        merged.setdefault(path, {}).update(values)
    if not merged:
        return 0
    now = now_us()
    with engine.write() as conn:
        source = lock_datasource(conn, datasource_id)
        known: dict[str, tuple[int, str]] = {
            name: (fid, ftype)
            for fid, name, ftype in conn.execute(
                sa.select(fields.c.id, fields.c.name, fields.c.type).where(fields.c.datasource_id == datasource_id)
            )
        }
        new_types: dict[str, str] = {}
        by_field: dict[str, dict[str, Any]] = {}
        blobs: dict[str, bytes] = {}
        for path, values in merged.items():
            for name, value in values.items():
                check_field_name(name, writing=True)
                if name == TAGS_FIELD:
                    value = normalize_tags(value)
                if value is not None:
                    try:
                        vtype = infer_type(value)
                    except TypeError:
                        raise TypeError(
                            f"field {name!r} of path {path!r}: unsupported value type {type(value).__name__}"
                        ) from None
                    ftype = known[name][1] if name in known else new_types.setdefault(name, vtype)
                    try:
                        value = normalize(value, ftype)
                    except TypeError:
                        raise TypeError(
                            f"field {name!r} has type {ftype}; got a {vtype} value for path {path!r}"
                        ) from None
                    problem = storage_problem(value)
                    if problem:
                        raise ValueError(f"field {name!r} of path {path!r}: {problem}")
                    if ftype == "bytes":
                        digest = hashlib.sha256(value).hexdigest()
                        blobs[digest] = value
                        value = digest
                by_field.setdefault(name, {})[path] = value

        # paths -> datapoint ids
        ids: dict[str, int] = {}
        paths = list(merged)
        for chunk in chunks([p for p in paths if not has_nul(p)], 500):
            for dp_id, p in conn.execute(
                sa.select(datapoints.c.id, datapoints.c.path).where(
                    datapoints.c.datasource_id == datasource_id, datapoints.c.path.in_(chunk)
                )
            ):
                ids[p] = dp_id
        missing = [p for p in paths if p not in ids]
        if missing:
            # metadata may come before the scan has seen a file (as in DagsHub's Data Engine):
            # the datapoint is registered now, and a later scan fills in size, width, height, format
            invalid = [p for p in missing if not _valid_path(p)]
            if invalid:
                raise KeyError(
                    f"{len(invalid)} path(s) are not datapoints of datasource {source!r} and not valid "
                    f"datapoint paths, e.g. {invalid[0]!r}"
                )
            bulk_insert(
                conn,
                datapoints,
                [{"datasource_id": datasource_id, "path": p, "created_at": now} for p in missing],
            )
            for chunk in chunks(missing, 500):
                for dp_id, p in conn.execute(
                    sa.select(datapoints.c.id, datapoints.c.path).where(
                        datapoints.c.datasource_id == datasource_id, datapoints.c.path.in_(chunk)
                    )
                ):
                    ids[p] = dp_id

        for name, ftype in new_types.items():
            if not any(v is not None for v in by_field[name].values()):
                continue
            fid = conn.execute(
                sa.insert(fields)
                .values(datasource_id=datasource_id, name=name, type=ftype, created_at=now)
                .returning(fields.c.id)
            ).scalar_one()
            known[name] = (fid, ftype)

        for data in blobs.values():
            engine.blobs.put(data)

        m = metadata_values
        changed = 0
        for name, items in by_field.items():
            if name not in known:  # a new field only ever set to None: nothing to do
                continue
            fid, ftype = known[name]
            col = VALUE_COLUMN[ftype]
            by_id = {ids[p]: v for p, v in items.items()}
            current: dict[int, Any] = {}
            if name not in new_types:
                for chunk in chunks(list(by_id), 500):
                    for dp_id, v in conn.execute(
                        sa.select(m.c.datapoint_id, m.c[col]).where(
                            m.c.field_id == fid, m.c.valid_to.is_(None), m.c.datapoint_id.in_(chunk)
                        )
                    ):
                        current[dp_id] = v
            to_close = [i for i, v in by_id.items() if i in current and current[i] != v]
            to_insert = [
                {"datapoint_id": i, "field_id": fid, col: v, "valid_from": now}
                for i, v in by_id.items()
                if v is not None and (i not in current or current[i] != v)
            ]
            for chunk in chunks(to_close, 500):
                conn.execute(
                    sa.update(m)
                    .where(m.c.field_id == fid, m.c.valid_to.is_(None), m.c.datapoint_id.in_(chunk))
                    .values(valid_to=now)
                )
            bulk_insert(conn, m, to_insert)
            changed += len(set(to_close) | {r["datapoint_id"] for r in to_insert})
    if changed >= BULK_ROWS:
        engine.analyze(metadata_values, fields)
    return changed
