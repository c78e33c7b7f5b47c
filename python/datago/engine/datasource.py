"""Datasources, their query views, metadata writes and query results."""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import sqlalchemy as sa

from . import scan as _scan
from . import writes
from .db import Engine, datasets, from_us, now_us, to_us
from .executor import PageSpec, Record, count, fetch_page
from .query import And, Field, Or, Query
from .values import check_field_name, check_name, is_missing

if TYPE_CHECKING:  # pragma: no cover
    import pandas


def _exact(q: Query | None) -> str | None:
    """A form of ``q`` equal for equal queries only (``==`` on queries takes ``1``, ``True``
    and ``1.0`` as the same value)."""
    return None if q is None else q.to_json()


class FieldRef(Field):
    """``view["name"]``: comparisons return ``view`` narrowed by the condition; ``&``, ``|`` and
    ``~`` on such results combine the conditions within ``view`` (``~(view["x"] > 1)`` is the
    datapoints of ``view`` where ``x > 1`` does not hold)."""

    def __init__(self, ds: Datasource, name: str) -> None:
        super().__init__(name)
        self._ds = ds

    def _make(self, op: str, value: Any = None) -> Datasource:
        return self._ds._within(self._ds.query, super()._make(op, value))


class Datasource:
    """A datasource, or a query view over one (``ds[...]``, ``select``, ``as_of``).

    Get one with :func:`datago.engine.datasources.get_or_create` or
    :func:`datago.engine.datasources.get_datasource`. Views share the datasource's data; write
    methods (scan, metadata) act on the datasource whatever the view.

    Attributes:
        engine: the storage :class:`~datago.engine.db.Engine`.
        id: datasource id (int).
        name: datasource name (str).
        root: absolute local folder or http(s) base URL ending with ``/`` (str).
        query: the view's condition (:class:`~datago.engine.query.Query` or None: everything).
    """

    def __init__(
        self,
        engine: Engine,
        id: int,
        name: str,
        root: str,
        *,
        query: Query | None = None,
        select: tuple[str, ...] | None = None,
        as_of_us: int | None = None,
        split: tuple[Query | None, Query] | None = None,
    ) -> None:
        self.engine = engine
        self.id = id
        self.name = name
        self.root = root
        self.query = query
        self._select = select
        self._as_of_us = as_of_us
        # (base, own) for views made by field comparisons: query is base AND own, and & | ~
        # combine the own conditions of views with the same base
        self._split = split

    def __repr__(self) -> str:
        q = f", query={self.query.to_json()}" if self.query is not None else ""
        return f"Datasource({self.name!r}, root={self.root!r}{q})"

    # --- views --------------------------------------------------------------------------

    def _replace(self, **kw: Any) -> Datasource:
        args = {"query": self.query, "select": self._select, "as_of_us": self._as_of_us, "split": self._split}
        if "query" in kw:
            args["split"] = None
        args.update(kw)
        return Datasource(self.engine, self.id, self.name, self.root, **args)

    def _narrow(self, q: Query) -> Datasource:
        return self._replace(query=q if self.query is None else And.of(self.query, q))

    def _within(self, base: Query | None, own: Query) -> Datasource:
        """The view ``base AND own``, remembering both (see ``_split``)."""
        return self._replace(query=own if base is None else And.of(base, own), split=(base, own))

    def _combine(self, other: Datasource | Query, kind: type[And] | type[Or]) -> Datasource | None:
        """``kind`` of the own conditions of two field-comparison views on the same base, or
        None when they are not such views."""
        if (
            isinstance(other, Datasource)
            and self._split is not None
            and other._split is not None
            and _exact(self._split[0]) == _exact(other._split[0])  # not ==: 1 == True == 1.0
        ):
            self._query_of(other)  # same datasource
            return self._within(self._split[0], kind.of(self._split[1], other._split[1]))
        return None

    @overload
    def __getitem__(self, key: str) -> FieldRef: ...

    @overload
    def __getitem__(self, key: Query | Datasource) -> Datasource: ...

    def __getitem__(self, key: str | Query | Datasource) -> FieldRef | Datasource:
        """``ds["field"]`` gives a field to compare (``ds["score"] > 0.5`` is a view);
        ``ds[view_or_query]`` narrows this view (the conditions AND together).

        Raises:
            TypeError: another key type, or a view of another datasource.
        """
        if isinstance(key, str):
            return FieldRef(self, key)
        return self._narrow(self._query_of(key))

    def _query_of(self, other: Any) -> Query:
        if isinstance(other, Query):
            return other
        if isinstance(other, Datasource):
            if other.id != self.id or other.engine.url != self.engine.url:
                raise TypeError(f"cannot combine views of datasources {self.name!r} and {other.name!r}")
            if other.query is None:
                raise ValueError("the other view has no query")
            return other.query
        raise TypeError(f"expected a query or a datasource view, got {type(other).__name__}")

    def __and__(self, other: Datasource | Query) -> Datasource:
        """Both views' conditions."""
        combined = self._combine(other, And)
        return combined if combined is not None else self._narrow(self._query_of(other))

    def __or__(self, other: Datasource | Query) -> Datasource:
        """Either view's condition (for field comparisons on the same view ``v``: within
        ``v``).

        Raises:
            ValueError: one side has no condition.
        """
        combined = self._combine(other, Or)
        if combined is not None:
            return combined
        if self.query is None:
            raise ValueError("cannot OR an unfiltered datasource")
        return self._replace(query=Or.of(self.query, self._query_of(other)))

    def __invert__(self) -> Datasource:
        """The negation: of the comparison for a view made by field comparisons on a view ``v``
        (``~(v["x"] > 1)``: the datapoints of ``v`` where ``x > 1`` does not hold), else of
        this view's whole condition (``~ds[q]``: the datapoints of the datasource outside it).

        Raises:
            ValueError: the view has no condition.
        """
        if self._split is not None:
            base, own = self._split
            return self._within(base, ~own)
        if self.query is None:
            raise ValueError("cannot negate an unfiltered datasource")
        return self._replace(query=~self.query)

    def select(self, *field_names: str) -> Datasource:
        """A view returning only these metadata fields (the automatic fields always come)."""
        return self._replace(select=tuple(check_field_name(f) for f in field_names))

    def as_of(self, when: _dt.datetime | float | int) -> Datasource:
        """A view answering with the data as it was at ``when``: metadata values valid then, and
        only datapoints that existed then.

        Args:
            when: an aware datetime, a naive datetime (taken as UTC, as in query values), or
                UNIX seconds.

        Raises:
            TypeError: another type.
        """
        return self._replace(as_of_us=to_us(when))

    @property
    def as_of_time(self) -> _dt.datetime | None:
        """The view's ``as_of`` time (aware UTC) or None."""
        return None if self._as_of_us is None else from_us(self._as_of_us)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible description of the view: ``{"datasource", "query", "select",
        "as_of"}`` (``as_of`` in µs since the epoch)."""
        return {
            "datasource": self.name,
            "query": None if self.query is None else self.query.to_dict(),
            "select": None if self._select is None else list(self._select),
            "as_of": self._as_of_us,
        }

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    def with_view(self, data: Mapping[str, Any]) -> Datasource:
        """This datasource with the query/select/as_of of a :meth:`to_dict` mapping.

        Raises:
            ValueError: malformed query.
        """
        q = data.get("query")
        sel = data.get("select")
        return self._replace(
            query=None if q is None else Query.from_dict(q),
            select=None if sel is None else tuple(check_field_name(s) for s in sel),
            as_of_us=data.get("as_of"),
        )

    # --- running ------------------------------------------------------------------------

    def _spec(self, limit: int | None = None, cursor: str | None = None) -> PageSpec:
        return PageSpec(
            source_ids=[self.id],
            query=self.query,
            select=None if self._select is None else list(self._select),
            as_of_us=self._as_of_us,
            limit=limit,
            cursor=cursor,
        )

    def head(self, n: int = 100) -> QueryResult:
        """The first ``n`` matching datapoints (by id), metadata included (one SQL statement)."""
        records, _ = fetch_page(self.engine, self._spec(limit=n))
        return QueryResult(self, records)

    def all(self) -> QueryResult:
        """All matching datapoints (one SQL statement)."""
        records, _ = fetch_page(self.engine, self._spec())
        return QueryResult(self, records)

    def pages(self, page_size: int = 1000) -> Iterator[QueryResult]:
        """Matching datapoints as consecutive pages (keyset paging on datapoint id)."""
        cursor = None
        while True:
            records, cursor = fetch_page(self.engine, self._spec(limit=page_size, cursor=cursor))
            if records:
                yield QueryResult(self, records)
            if cursor is None:
                return

    def count(self) -> int:
        """Number of matching datapoints."""
        return count(self.engine, self._spec())

    # --- data ---------------------------------------------------------------------------

    @property
    def fields(self) -> dict[str, str]:
        """Metadata field names and their types (``int float bool str datetime bytes``)."""
        from .db import fields as fields_table

        with self.engine.read() as conn:
            rows = conn.execute(
                sa.select(fields_table.c.name, fields_table.c.type)
                .where(fields_table.c.datasource_id == self.id)
                .order_by(fields_table.c.name)
            )
            return {name: ftype for name, ftype in rows}

    def scan(self, progress: bool = True, max_workers: int = 8) -> int:
        """Register files of the root not registered yet (re-run to pick up new files), reading
        size (bytes) and width/height/format from image headers (no pixel decode), with a tqdm
        progress bar. Hidden files are skipped; existing datapoints are not updated.

        Returns:
            Number of datapoints added.

        Raises:
            OSError: the local root cannot be listed.
            httpx.HTTPError: the http root cannot be listed.
        """
        from .db import datapoints

        with self.engine.read() as conn:
            known = set(
                conn.execute(sa.select(datapoints.c.path).where(datapoints.c.datasource_id == self.id)).scalars()
            )
        new = [p for p in _scan.list_files(self.root) if p not in known]
        records = _scan.probe_all(self.root, new, progress, f"scan {self.name}", max_workers)
        return writes.add_datapoints(self.engine, self.id, records)

    def add_datapoints(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Register datapoints without scanning (bulk insert); see
        :func:`datago.engine.writes.add_datapoints`.

        Returns:
            Number added (existing paths are skipped).
        """
        return writes.add_datapoints(self.engine, self.id, records)

    def metadata_context(self) -> MetadataContext:
        """A context collecting metadata updates, written in one transaction when the block
        exits normally; if the block raises, nothing is written::

            with ds.metadata_context() as ctx:
                ctx.update_metadata("a.jpg", {"label": "cat", "score": 0.9})
        """
        return MetadataContext(self)

    def update_metadata(self, paths: str | Datapoint | Iterable[str | Datapoint], metadata: Mapping[str, Any]) -> int:
        """Write metadata for one or more datapoints now (one transaction).

        Returns / Raises: see :func:`datago.engine.writes.write_metadata`.
        """
        with self.metadata_context() as ctx:
            ctx.update_metadata(paths, metadata)
        return ctx.written

    def upload_metadata_from_dataframe(self, df: pandas.DataFrame, path_column: str = "path") -> int:
        """Write one metadata field per other column of ``df`` for the datapoint in
        ``path_column``, in one transaction. Missing values (None, NaN, NaT) are skipped.

        Returns:
            Number of values changed.

        Raises:
            KeyError: no ``path_column``, or a path that is not a datapoint (nothing written).
            TypeError: a value type that does not match its field (nothing written).
            ValueError: a reserved field name or a value no backend stores alike (an int beyond
                64 bits, a str with NUL; nothing written).
        """
        if path_column not in df.columns:
            raise KeyError(f"dataframe has no column {path_column!r}")
        columns = [c for c in df.columns if c != path_column]  # labels; the field names are str(label)
        updates = []
        for row in df.to_dict("records"):
            path = row[path_column]
            values = {}
            for c in columns:
                v = row[c]
                if is_missing(v):
                    continue
                if hasattr(v, "item") and not isinstance(v, (bytes, str, _dt.datetime)):
                    v = v.item()
                values[str(c)] = v
            updates.append((str(path), values))
        return writes.write_metadata(self.engine, self.id, updates)

    def save_dataset(self, name: str, overwrite: bool = False) -> Datasource:
        """Store this view (query, select, as_of) under ``name``; it is re-evaluated whenever
        it is loaded with :func:`datago.engine.datasets.get_dataset`.

        Raises:
            ValueError: ``name`` exists and not ``overwrite``, or is empty, longer than 255
                characters or contains NUL.
        """
        check_name("dataset", name)
        select = sa.select(datasets.c.id).where(datasets.c.name == name)
        for attempt in range(3):
            try:
                with self.engine.write() as conn:
                    exists = conn.execute(select).first()
                    if exists is not None:
                        if not overwrite:
                            raise ValueError(f"dataset {name!r} already exists")
                        conn.execute(sa.delete(datasets).where(datasets.c.id == exists[0]))
                    conn.execute(
                        sa.insert(datasets).values(
                            name=name, datasource_id=self.id, query=self.to_json(), created_at=now_us()
                        )
                    )
                return self
            except sa.exc.IntegrityError:
                # a concurrent save of the same name committed first (PostgreSQL): as if it had
                # come before us; anything else (e.g. the datasource was deleted) is re-raised
                with self.engine.read() as conn:
                    if conn.execute(select).first() is None or attempt == 2:
                        raise
                if not overwrite:
                    raise ValueError(f"dataset {name!r} already exists") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def delete_source(self) -> None:
        """Delete this datasource with its datapoints, metadata history, fields and saved
        datasets; see :func:`datago.engine.datasources.delete_source`.

        Raises:
            KeyError: it was deleted already.
        """
        from .datasources import delete_source

        delete_source(self.name, self.engine)

    def read_file(self, path: str) -> bytes:
        """Content of the datapoint file ``path`` (from the local root or a GET).

        Raises:
            FileNotFoundError: missing or outside the root.
            httpx.HTTPStatusError: a failed GET.
        """
        return _scan.read_bytes(self.root, path)


class MetadataContext:
    """Collects metadata updates; see :meth:`Datasource.metadata_context`.

    Attributes:
        written: number of values changed once the block has exited (int).
    """

    def __init__(self, ds: Datasource) -> None:
        self._ds = ds
        self._updates: list[tuple[str, dict[str, Any]]] = []
        self.written = 0

    def update_metadata(self, paths: str | Datapoint | Iterable[str | Datapoint], metadata: Mapping[str, Any]) -> None:
        """Queue ``metadata`` (field -> value; None removes the value) for one path or many.

        Raises:
            TypeError: ``metadata`` is not a mapping or a path is not a str/Datapoint.
        """
        if not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
        if isinstance(paths, (str, Datapoint)):
            paths = [paths]
        for p in paths:
            path = p.path if isinstance(p, Datapoint) else p
            if not isinstance(path, str):
                raise TypeError(f"datapoint paths are str, got {type(path).__name__}")
            self._updates.append((path, dict(metadata)))

    def __enter__(self) -> MetadataContext:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        updates, self._updates = self._updates, []
        if exc_type is None:
            self.written = writes.write_metadata(self._ds.engine, self._ds.id, updates)


class Datapoint:
    """One file of a datasource with its metadata.

    Attributes:
        datapoint_id: id (int, grows with insertion order).
        path: path relative to the datasource root (str, ``/``-separated).
        size: file size in bytes (int or None).
        width, height: image size in pixels (int or None when not an image).
        format: image format as Pillow names it, e.g. ``"JPEG"`` (str or None).
        created_at: when it was registered (aware UTC datetime).
        metadata: field -> value; blob fields hold the blob's sha256 hex until loaded with
            :meth:`get_blob` or :meth:`QueryResult.get_blob_fields`.
        datasource: the :class:`Datasource` view that produced it.
    """

    __slots__ = (
        "_types",
        "created_at",
        "datapoint_id",
        "datasource",
        "format",
        "height",
        "metadata",
        "path",
        "size",
        "width",
    )

    def __init__(self, ds: Datasource, rec: Record) -> None:
        self.datasource = ds
        self.datapoint_id = rec.id
        self.path = rec.path
        self.size = rec.size
        self.width = rec.width
        self.height = rec.height
        self.format = rec.format
        self.created_at = from_us(rec.created_at)
        self._types = {k: t for k, (t, _) in rec.values.items()}
        self.metadata: dict[str, Any] = {k: v for k, (_, v) in rec.values.items()}

    def __repr__(self) -> str:
        return f"Datapoint({self.path!r}, metadata={self.metadata!r})"

    def get_blob(self, field: str, load_into_memory: bool = True) -> bytes:
        """The bytes of blob field ``field``; with ``load_into_memory`` they replace the hash in
        :attr:`metadata`.

        Raises:
            KeyError: the datapoint has no value for ``field``.
            TypeError: ``field`` is not a blob (bytes) field.
            FileNotFoundError: the blob is missing from the blob store.
        """
        if field not in self.metadata:
            raise KeyError(f"datapoint {self.path!r} has no value for field {field!r}")
        if self._types.get(field) != "bytes":
            raise TypeError(f"field {field!r} is not a blob field")
        value = self.metadata[field]
        if isinstance(value, bytes):
            return value
        data = self.datasource.engine.blobs.get(value)
        if load_into_memory:
            self.metadata[field] = data
        return data

    @property
    def local_path(self) -> Path | None:
        """The file on disk for a local root (None for an http root or a missing file)."""
        return None if _scan.is_http(self.datasource.root) else _scan.local_file(self.datasource.root, self.path)

    @property
    def url(self) -> str | None:
        """The file's URL for an http root (None for a local root)."""
        return _scan.file_url(self.datasource.root, self.path) if _scan.is_http(self.datasource.root) else None

    def read(self) -> bytes:
        """The file's content. Raises as :meth:`Datasource.read_file`."""
        return self.datasource.read_file(self.path)


class QueryResult(Sequence[Datapoint]):
    """The datapoints a query returned (a sequence of :class:`Datapoint`).

    Attributes:
        datasource: the view that produced it.
        entries: the datapoints (list).
    """

    def __init__(self, ds: Datasource, records: list[Record]) -> None:
        self.datasource = ds
        self.entries = [Datapoint(ds, r) for r in records]

    def __len__(self) -> int:
        return len(self.entries)

    @overload
    def __getitem__(self, i: int) -> Datapoint: ...

    @overload
    def __getitem__(self, i: slice) -> list[Datapoint]: ...

    def __getitem__(self, i: int | slice) -> Datapoint | list[Datapoint]:
        return self.entries[i]

    def __iter__(self) -> Iterator[Datapoint]:
        return iter(self.entries)

    def __repr__(self) -> str:
        return f"QueryResult({self.datasource.name!r}, {len(self)} datapoints)"

    @property
    def paths(self) -> list[str]:
        """Paths of the datapoints, in order."""
        return [d.path for d in self.entries]

    @property
    def dataframe(self) -> pandas.DataFrame:
        """A pandas DataFrame, one row per datapoint in result order, built from memory (no
        query): columns ``path`` (str, relative to the root), ``datapoint_id`` (int), ``size``
        (bytes), ``width`` and ``height`` (pixels), ``format`` (str, e.g. "JPEG"),
        ``created_at`` (aware UTC datetime of registration), then one column per metadata field
        (sorted by name) holding the values as :attr:`Datapoint.metadata` has them (blob fields:
        the sha256 hex, or the bytes once loaded). Missing values are None/NaN; int columns with
        missing values become float."""
        import pandas as pd

        names = sorted({k for d in self.entries for k in d.metadata})
        base = ["path", "datapoint_id", "size", "width", "height", "format", "created_at"]
        rows = [
            [d.path, d.datapoint_id, d.size, d.width, d.height, d.format, d.created_at]
            + [d.metadata.get(n) for n in names]
            for d in self.entries
        ]
        return pd.DataFrame(rows, columns=base + names)

    def get_blob_fields(self, *field_names: str, max_workers: int = 8) -> QueryResult:
        """Load the given blob fields of every datapoint into memory (``metadata[field]``
        becomes bytes), reading in parallel with a thread pool. Datapoints without a value are
        skipped.

        Returns:
            self.

        Raises:
            TypeError: a field is not a blob field.
            FileNotFoundError: a blob is missing from the store.
        """
        jobs = [(d, f) for d in self.entries for f in field_names if f in d.metadata]
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            list(pool.map(lambda job: job[0].get_blob(job[1]), jobs))
        return self

    def download_files(
        self, target_dir: str | os.PathLike[str], progress: bool = True, max_workers: int = 8
    ) -> list[Path]:
        """Copy (local root) or download (http root) the files into ``target_dir``, keeping
        their relative paths, with a tqdm progress bar.

        Returns:
            The written file paths, in result order.

        Raises:
            FileNotFoundError: a source file is missing.
            httpx.HTTPStatusError: a failed download.
        """
        return _scan.download(self.datasource.root, self.paths, target_dir, progress, max_workers)

    def ml_dataset_config(self, client_config: Mapping[str, Any] | None = None, **source_config: Any) -> dict[str, Any]:
        """The datago client config (``{"source_type": "db", "source_config": {...}, ...}``)
        that streams the datapoints of this result's query (its datasource, condition and
        ``as_of``, re-evaluated by the server; ``select`` is not applied) through datago's
        ``db`` source.

        Without an ``api_url`` in ``source_config``, the engine's server is started in this
        process on 127.0.0.1 (once per engine, stopped at exit) and used with a key of its own;
        with one, that server is used (``api_key`` from ``source_config`` or
        ``$DATAROOM_API_KEY``), so the embedded and the team paths are the same code.

        Args:
            client_config: top-level client keys (``image_config``, ``limit``,
                ``samples_buffer_size``, ``rank``, ...) merged into the config.
            source_config: ``source_config`` entries overriding the defaults (``sources``: the
                datasource name, ``page_size``: 512, ``query``: the view's query as JSON,
                ``as_of``: µs since the epoch).
        """
        view = self.datasource
        config: dict[str, Any] = {"sources": view.name, "page_size": 512}
        if "api_url" not in source_config:
            base_url, api_key = view.engine.background_server()
            config.update(api_url=base_url + "/api/", api_key=api_key)
        if view.query is not None:
            config["query"] = view.query.to_json()
        if view._as_of_us is not None:
            config["as_of"] = view._as_of_us
        config.update(source_config)
        return {**(client_config or {}), "source_type": "db", "source_config": config}

    def as_ml_dataset(self, client_config: Mapping[str, Any] | None = None, **source_config: Any) -> Any:
        """A ``datago.DatagoClient`` streaming this query's images through the native loader
        (config from :meth:`ml_dataset_config`, same arguments). Iterate it (or use it as a
        context manager) for :class:`datago.Sample` objects whose ``id`` is the datapoint id as a
        str, ``source`` the datasource name and ``attributes`` the metadata fields (datetimes as
        ISO-8601 str, blobs as signed URLs; see :mod:`datago.engine.dataroom`).

        Raises:
            ImportError: the native datago client is not available.
            ValueError: a config entry datago refuses.
        """
        from datago import DatagoClient  # type: ignore[attr-defined]

        return DatagoClient(self.ml_dataset_config(client_config, **source_config))
