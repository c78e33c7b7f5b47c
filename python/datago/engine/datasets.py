"""Saved datasets: named queries (see :meth:`Datasource.save_dataset`), re-evaluated on load."""

from __future__ import annotations

import json

import sqlalchemy as sa

from .datasource import Datasource
from .datasources import DbArg
from .db import datasets, datasources, get_engine


def get_dataset(name: str, db_url: DbArg = None) -> Datasource:
    """The saved dataset ``name`` as a datasource view; running it (``all()``, ``head()``) sees
    the current data.

    Raises:
        KeyError: no such dataset.
    """
    engine = get_engine(db_url)
    with engine.read() as conn:
        row = conn.execute(
            sa.select(datasources.c.id, datasources.c.name, datasources.c.root, datasets.c.query)
            .select_from(datasets.join(datasources, datasources.c.id == datasets.c.datasource_id))
            .where(datasets.c.name == name)
        ).first()
    if row is None:
        raise KeyError(f"no dataset named {name!r}")
    ds = Datasource(engine, int(row.id), str(row.name), str(row.root))
    return ds.with_view(json.loads(row.query))


def get_datasets(db_url: DbArg = None) -> dict[str, Datasource]:
    """All saved datasets: name -> view."""
    engine = get_engine(db_url)
    with engine.read() as conn:
        names = conn.execute(sa.select(datasets.c.name).order_by(datasets.c.name)).scalars().all()
    return {n: get_dataset(n, engine) for n in names}


def delete_dataset(name: str, db_url: DbArg = None) -> None:
    """Delete the saved dataset ``name``.

    Raises:
        KeyError: no such dataset.
    """
    engine = get_engine(db_url)
    with engine.write() as conn:
        if conn.execute(sa.delete(datasets).where(datasets.c.name == name)).rowcount == 0:
            raise KeyError(f"no dataset named {name!r}")
