"""Query results: :class:`QueryResult` (a sequence of :class:`Datapoint`), and
:class:`MetadataContext` (batched metadata writes)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from . import scan as _scan
from . import writes
from .db import from_us
from .executor import Record

if TYPE_CHECKING:  # pragma: no cover
    import pandas

    from .datasource import Datasource


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
