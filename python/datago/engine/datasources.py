"""Datasource registry: ``get_or_create``, ``get_datasource``, ``get_datasources``,
``delete_source``.

Every function takes ``db_url``: an engine storage URL (``sqlite:///file``,
``postgresql+psycopg://user:pw@host/db``), a SQLite file path, an
:class:`~datago.engine.db.Engine`, or None for the default (``$DATAGO_ENGINE_DB`` or
``~/.cache/datago/engine.sqlite``).
"""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa

from . import scan as _scan
from . import writes
from .datasource import Datasource, find_datasource, find_datasource_by_id
from .db import (
    Engine,
    datasources,
    get_engine,
    now_us,
)
from .values import check_name

DbArg = Engine | str | os.PathLike[str] | None


def _from_row(engine: Engine, row: Any) -> Datasource:
    return Datasource(engine, int(row.id), str(row.name), str(row.root))


def get_or_create(
    name: str, root: str | os.PathLike[str], db_url: DbArg = None, scan: bool = True, progress: bool = True
) -> Datasource:
    """The datasource ``name``, created for ``root`` if it does not exist, then scanned
    (new files are registered; see :meth:`Datasource.scan`).

    Args:
        name: datasource name (the ``source`` of server results), 1..255 characters.
        root: local folder or http(s) base URL.
        db_url: storage (see module docstring).
        scan: scan the root (default True).
        progress: show a tqdm progress bar while scanning.

    Raises:
        ValueError: a name that is empty, longer than 255 characters or contains NUL, or
            ``name`` exists with another root.
        FileNotFoundError: a local root that is not a folder.
    """
    check_name("datasource", name)
    engine = get_engine(db_url)
    root = _scan.normalize_root(root)
    ds = find_datasource(engine, name)
    if ds is None:
        try:
            with engine.write() as conn:
                conn.execute(sa.insert(datasources).values(name=name, root=root, created_at=now_us()))
        except sa.exc.IntegrityError:  # created concurrently
            pass
        ds = find_datasource(engine, name)
        assert ds is not None
    if ds.root != root:
        raise ValueError(f"datasource {name!r} exists with root {ds.root!r}, not {root!r}")
    if scan:
        ds.scan(progress=progress)
    return ds


def get_datasource(name: str | None = None, db_url: DbArg = None, *, id: int | None = None) -> Datasource:
    """The existing datasource named ``name``, or with the id ``id`` (as DagsHub's
    ``datasources.get_datasource(name=...)`` / ``(id=...)``, without the repository argument).

    Raises:
        KeyError: no such datasource.
        ValueError: neither or both of ``name`` and ``id`` given.
        TypeError: an ``id`` that is not an int (or a str of digits).
    """
    if (name is None) == (id is None):
        raise ValueError("get_datasource takes either name=... or id=...")
    engine = get_engine(db_url)
    if id is not None:
        if isinstance(id, bool) or not isinstance(id, (int, str)) or (isinstance(id, str) and not id.isdigit()):
            raise TypeError(f"datasource id must be an int, got {id!r}")
        ds = find_datasource_by_id(engine, int(id))
        if ds is None:
            raise KeyError(f"no datasource with id {id!r}")
        return ds
    assert name is not None
    ds = find_datasource(engine, name)
    if ds is None:
        raise KeyError(f"no datasource named {name!r}")
    return ds


def get_datasources(db_url: DbArg = None) -> list[Datasource]:
    """All datasources, by name."""
    engine = get_engine(db_url)
    with engine.read() as conn:
        rows = conn.execute(
            sa.select(datasources.c.id, datasources.c.name, datasources.c.root).order_by(datasources.c.name)
        ).all()
    return [_from_row(engine, r) for r in rows]


def delete_source(name: str, db_url: DbArg = None) -> None:
    """Delete datasource ``name`` with its datapoints, metadata history, fields and saved
    datasets (one transaction). Files and blobs are left alone.

    Raises:
        KeyError: no such datasource.
    """
    engine = get_engine(db_url)
    writes.delete_datasource(engine, get_datasource(name, engine).id)


def create_datasource(name: str, root: str | os.PathLike[str], db_url: DbArg = None, scan: bool = True) -> Datasource:
    """A new datasource (DagsHub's ``create_datasource`` / ``create_from_bucket`` without the
    repository argument): like :func:`get_or_create`, without a progress bar.

    Raises:
        ValueError: ``name`` exists already, or is not a valid name.
        FileNotFoundError: a local root that is not a folder.
    """
    check_name("datasource", name)
    if find_datasource(get_engine(db_url), name) is not None:
        raise ValueError(f"datasource {name!r} already exists")
    return get_or_create(name, root, db_url, scan=scan, progress=False)
