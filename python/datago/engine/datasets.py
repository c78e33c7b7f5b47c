"""Saved datasets: named queries (see :meth:`Datasource.save_dataset`), re-evaluated on load."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from .datasource import Datasource
from .datasources import DbArg
from .db import Engine, datasets, datasources, get_engine
from .values import has_nul


def _views(engine: Engine, *where: Any) -> dict[str, Datasource]:
    """Saved datasets matching ``where``: name -> view (one statement)."""
    with engine.read() as conn:
        rows = conn.execute(
            sa.select(
                datasets.c.name.label("dataset"),
                datasources.c.id,
                datasources.c.name,
                datasources.c.root,
                datasets.c.query,
            )
            .select_from(datasets.join(datasources, datasources.c.id == datasets.c.datasource_id))
            .where(*where)
            .order_by(datasets.c.name)
        ).all()
    return {
        str(r.dataset): Datasource(engine, int(r.id), str(r.name), str(r.root)).with_view(json.loads(r.query))
        for r in rows
    }


def get_dataset(name: str, db_url: DbArg = None) -> Datasource:
    """The saved dataset ``name`` as a datasource view; running it (``all()``, ``head()``) sees
    the current data.

    Raises:
        KeyError: no such dataset.
    """
    found = {} if has_nul(name) else _views(get_engine(db_url), datasets.c.name == name)  # NUL: never stored
    if name not in found:
        raise KeyError(f"no dataset named {name!r}")
    return found[name]


def get_datasets(db_url: DbArg = None) -> dict[str, Datasource]:
    """All saved datasets: name -> view, by name."""
    return _views(get_engine(db_url))


def delete_dataset(name: str, db_url: DbArg = None) -> None:
    """Delete the saved dataset ``name``.

    Raises:
        KeyError: no such dataset.
    """
    with get_engine(db_url).write() as conn:
        if has_nul(name) or conn.execute(sa.delete(datasets).where(datasets.c.name == name)).rowcount == 0:
            raise KeyError(f"no dataset named {name!r}")
