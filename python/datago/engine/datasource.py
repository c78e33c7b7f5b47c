"""Datasources and their query views (the results are in :mod:`datago.engine.results`)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import sqlalchemy as sa

from . import scan as _scan
from . import writes
from .db import Engine, datapoints, datasets, datasources, from_us, now_us, to_us
from .db import fields as fields_table
from .executor import PageSpec, count, fetch_page
from .query import And, Field, Or, Query
from .results import Datapoint, MetadataContext, QueryResult
from .values import check_field_name, check_name, has_nul, is_missing

__all__ = [
    "Datapoint",
    "Datasource",
    "FieldRef",
    "MetadataContext",
    "QueryResult",
    "find_datasource",
    "find_datasource_by_id",
]

if TYPE_CHECKING:  # pragma: no cover
    import pandas

#: folder under which ``default_dataset_location`` puts each datasource's files and blobs
DATASETS_DIR_ENV = "DATAGO_DATASETS_DIR"


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

        Datapoints registered by a metadata write before their file was scanned get their size,
        width, height and format now.

        Returns:
            Number of datapoints added or completed.

        Raises:
            OSError: the local root cannot be listed.
            httpx.HTTPError: the http root cannot be listed.
        """
        with self.engine.read() as conn:
            rows = conn.execute(
                sa.select(datapoints.c.path, datapoints.c.size).where(datapoints.c.datasource_id == self.id)
            ).all()
        known = {p for p, size in rows if size is not None}
        pending = {p for p, size in rows if size is None}  # registered by metadata before a scan
        new = [p for p in _scan.list_files(self.root) if p not in known]
        records = _scan.probe_all(self.root, new, progress, f"scan {self.name}", max_workers)
        filled = writes.fill_datapoints(self.engine, self.id, [r for r in records if r["path"] in pending])
        return filled + writes.add_datapoints(self.engine, self.id, [r for r in records if r["path"] not in pending])

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

    def upload_metadata_from_dataframe(self, df: pandas.DataFrame, path_column: str | int | None = None) -> int:
        """Write one metadata field per other column of ``df`` for the datapoint in the path
        column, in one transaction. Missing values (None, NaN, NaT) are skipped. Paths the scan
        has not seen yet become datapoints (see :func:`datago.engine.writes.write_metadata`).

        Args:
            df: one row per datapoint.
            path_column: the column of paths (relative to the root): its name, or its position
                (int) as in DagsHub's Data Engine; None (default): the first column.

        Returns:
            Number of values changed.

        Raises:
            KeyError: no such column, or a path that is not a valid datapoint path (nothing
                written).
            TypeError: a value type that does not match its field (nothing written).
            ValueError: a reserved field name or a value no backend stores alike (an int beyond
                64 bits, a str with NUL; nothing written).
        """
        if path_column is None:
            if len(df.columns) == 0:
                raise KeyError("dataframe has no columns (the first column is the path column)")
            path_column = df.columns[0]
        elif isinstance(path_column, int) and not isinstance(path_column, bool):
            if not -len(df.columns) <= path_column < len(df.columns):
                raise KeyError(f"dataframe has no column at index {path_column} ({len(df.columns)} columns)")
            path_column = df.columns[path_column]
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

    @property
    def default_dataset_location(self) -> Path:
        """Where this datasource's files and blobs are saved when no folder is given
        (``download_files()``, ``get_blob()``'s cache, ``as_ml_dataset(savedir=None)``):
        ``$DATAGO_DATASETS_DIR`` or ``~/datago/datasets``, then ``<name>-<key>``, ``key`` 8 hex
        digits of the engine URL, datasource id and root (two engines' datasources of one name do
        not share a folder). Not created here."""
        base = os.environ.get(DATASETS_DIR_ENV) or str(Path.home() / "datago" / "datasets")
        key = hashlib.sha256(f"{self.engine.url}\x00{self.id}\x00{self.root}".encode()).hexdigest()[:8]
        return Path(base).expanduser() / f"{self.name}-{key}"

    def visualize(self, open_browser: bool = True, page_size: int = 48, **kwargs: Any) -> str:
        """Open a gallery of this view's datapoints in the browser: thumbnails with their
        metadata, paged, served by the engine's server: :attr:`Engine.server_url
        <datago.engine.db.Engine.server_url>` when set (``datago serve`` on this database), else
        one started in this process on 127.0.0.1 (DagsHub opens Voxel51 here).

        Args:
            open_browser: open the URL with :mod:`webbrowser` (default True).
            page_size: thumbnails per page (1..500).
            kwargs: accepted and ignored (DagsHub's visualizer options).

        Returns:
            The gallery URL (signed; valid for a day).

        Raises:
            ValueError: ``page_size`` outside 1..500.
        """
        from .signing import gallery_url

        if not 1 <= int(page_size) <= 500:
            raise ValueError(f"page_size must be in 1..500, got {page_size}")
        if self.engine.server_url:  # a datago serve on this database (it accepts our signature)
            base_url = self.engine.server_url.rstrip("/")
        else:
            base_url, _key = self.engine.background_server()
        view = {**self.to_dict(), "page_size": int(page_size)}
        url = gallery_url(base_url, self.engine.secret(), json.dumps(view, separators=(",", ":"), sort_keys=True))
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        return url

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
        ds = find_datasource(self.engine, self.name)
        if ds is None:
            raise KeyError(f"no datasource named {self.name!r}")
        writes.delete_datasource(self.engine, ds.id)

    def read_file(self, path: str) -> bytes:
        """Content of the datapoint file ``path`` (from the local root or a GET).

        Raises:
            FileNotFoundError: missing or outside the root.
            httpx.HTTPStatusError: a failed GET.
        """
        return _scan.read_bytes(self.root, path)


def find_datasource(engine: Engine, name: str) -> Datasource | None:
    """The datasource ``name`` of ``engine``, or None when there is none."""
    if has_nul(name):  # never stored
        return None
    with engine.read() as conn:
        row = conn.execute(
            sa.select(datasources.c.id, datasources.c.name, datasources.c.root).where(datasources.c.name == name)
        ).first()
    return None if row is None else Datasource(engine, int(row.id), str(row.name), str(row.root))


def find_datasource_by_id(engine: Engine, datasource_id: int) -> Datasource | None:
    """The datasource with id ``datasource_id`` of ``engine``, or None when there is none."""
    with engine.read() as conn:
        row = conn.execute(
            sa.select(datasources.c.id, datasources.c.name, datasources.c.root).where(datasources.c.id == datasource_id)
        ).first()
    return None if row is None else Datasource(engine, int(row.id), str(row.name), str(row.root))
