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

Layers (each imports only the ones before it; ``tests/engine/test_layering.py`` checks it):
storage (``values``, ``signing``, ``scan``, ``blobs``, ``schema``, ``db``, ``writes``, ``tokens``)
→ query (``query``, ``sql``, ``executor``, ``render``, ``dataroom``, ``results``, ``datasource``,
``datasources``, ``datasets``, ``ml``) → server (the ``server`` package) → ``cli`` and this package,
which installs the server's starter for :meth:`Engine.background_server` (storage does not
import the server).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import datasets, datasources
from .datasets import get_dataset
from .datasource import Datasource
from .datasources import create_datasource, delete_source, get_datasource, get_datasources, get_or_create
from .db import Engine, get_engine, set_background_starter
from .objstore import enable_gcs_bucket_downloader, enable_s3_bucket_downloader
from .query import And, Condition, Field, Not, Or, Query
from .results import Datapoint, MetadataContext, QueryResult

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
    "create_datasource",
    "datasets",
    "datasources",
    "delete_source",
    "enable_gcs_bucket_downloader",
    "enable_s3_bucket_downloader",
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


def _start_background_server(engine: Engine) -> tuple[str, str, Callable[[], None]]:
    """The starter of :meth:`Engine.background_server`: a server with a read-only key."""
    from .server import serve_in_background as _serve

    return _serve(engine, read_only=True)


set_background_starter(_start_background_server)
