"""datago's data engine: datasources of files with typed, versioned metadata, queries, saved
datasets, time travel, blobs, and an HTTP server speaking the dataroom image API.

Modelled on DagsHub's Data Engine::

    from datago.engine import datasources, datasets

    ds = datasources.get_or_create("photos", "/data/photos")       # scans the folder
    with ds.metadata_context() as ctx:
        ctx.update_metadata("cat.jpg", {"label": "cat", "score": 0.9})
    cats = ds[(ds["label"] == "cat") & (ds["score"] > 0.5)].all()
    cats.dataframe                                                   # pandas
    ds[ds["label"] == "cat"].save_dataset("cats")
    datasets.get_dataset("cats").all()                               # re-evaluated
    ds.as_of(yesterday).all()                                        # time travel

Storage is a SQLite file by default (``$DATAGO_ENGINE_DB`` or ``~/.cache/datago/engine.sqlite``)
or PostgreSQL (``postgresql+psycopg://...``). Importing this package loads no native library.
"""

from __future__ import annotations

from typing import Any

from . import datasets, datasources
from .datasets import get_dataset
from .datasource import Datapoint, Datasource, MetadataContext, QueryResult
from .datasources import delete_source, get_datasource, get_datasources, get_or_create
from .db import Engine, get_engine
from .query import And, Condition, Field, Not, Or, Query

__all__ = [
    "And",
    "Condition",
    "Datapoint",
    "Datasource",
    "Engine",
    "Field",
    "MetadataContext",
    "Not",
    "Or",
    "Query",
    "QueryResult",
    "datasets",
    "datasources",
    "delete_source",
    "get_dataset",
    "get_datasource",
    "get_datasources",
    "get_engine",
    "get_or_create",
    "serve_in_background",
]


def serve_in_background(engine_or_db_url: Any = None, host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> Any:
    """Start the engine server in a background thread; see
    :func:`datago.engine.server.serve_in_background` (returns ``(base_url, api_key, stop)``)."""
    from .server import serve_in_background as _serve

    return _serve(engine_or_db_url, host, port, **kwargs)
