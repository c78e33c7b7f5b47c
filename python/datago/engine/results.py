"""Query results: :class:`QueryResult` (a sequence of :class:`Datapoint`), and
:class:`MetadataContext` (batched metadata writes)."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from . import scan as _scan
from . import signing as _signing
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

    def __getitem__(self, field: str) -> Any:
        """``datapoint["field"]``: a metadata value, or one of the generated fields ``path``,
        ``datapoint_id``, ``dagshub_download_url`` (also ``download_url``), ``size``, ``width``,
        ``height``, ``format``, ``created_at``.

        Raises:
            KeyError: the datapoint has no value for ``field``.
        """
        gen = _GENERATED.get(field)
        if gen is not None:
            return gen(self)
        try:
            return self.metadata[field]
        except KeyError:
            raise KeyError(f"datapoint {self.path!r} has no value for field {field!r}") from None

    @property
    def download_url(self) -> str:
        """A URL the file can be downloaded from: a signed URL of the engine's server when
        :attr:`Engine.server_url <datago.engine.db.Engine.server_url>` is set (``datago serve``,
        ``$DATAGO_SERVER_URL``; valid for :data:`DOWNLOAD_URL_TTL` seconds), else the file's URL
        for an http root, else a ``file://`` URL of the file under the local root (the embedded
        engine)."""
        return download_url_maker(self.datasource)(self.path)

    @property
    def blob_cache_location(self) -> Path:
        """The folder blobs are cached in: ``<default_dataset_location>/.metadata_blobs``."""
        return self.datasource.default_dataset_location / ".metadata_blobs"

    def _blob_sha(self, field: str) -> str | None:
        """The sha256 of blob field ``field`` while its value is still the hash (None once it
        is bytes or the path of a fetched copy).

        Raises:
            KeyError: no value for ``field``.
            TypeError: not a blob field.
        """
        if field not in self.metadata:
            raise KeyError(f"datapoint {self.path!r} has no value for field {field!r}")
        if self._types.get(field) != "bytes":
            raise TypeError(f"field {field!r} is not a blob field")
        value = self.metadata[field]
        return value if isinstance(value, str) and _is_sha256(value) else None

    def _blob_bytes(self, sha: str, cache_on_disk: bool) -> tuple[bytes, Path | None]:
        """The blob's bytes, read from the disk cache when it has them, else from the blob store
        (then written to the cache with ``cache_on_disk``), and the cache file (or None)."""
        cached = self.blob_cache_location / sha
        if cache_on_disk and cached.is_file():
            return cached.read_bytes(), cached
        data = self.datasource.engine.blobs.get(sha)
        if not cache_on_disk:
            return data, None
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, cached)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return data, cached

    def get_blob(
        self,
        field: str,
        cache_on_disk: bool = True,
        store_value: bool = False,
        *,
        load_into_memory: bool | None = None,
    ) -> bytes:
        """The bytes of blob field ``field``, as DagsHub's ``Datapoint.get_blob``.

        By default the blob is saved to :attr:`blob_cache_location` and the field's value (in
        :attr:`metadata`, ``datapoint[field]``) becomes that file's :class:`~pathlib.Path`; with
        ``store_value`` it becomes the bytes. A value that is a path already is read from it.

        Args:
            field: a blob (bytes) field.
            cache_on_disk: keep the blob in the cache folder (read from it next time).
            store_value: replace the value with the bytes.
            load_into_memory: datago's older name of ``store_value`` (wins when given).

        Raises:
            KeyError: the datapoint has no value for ``field``.
            TypeError: ``field`` is not a blob (bytes) field.
            FileNotFoundError: the blob is missing from the blob store.
        """
        if load_into_memory is not None:
            store_value = load_into_memory
        sha = self._blob_sha(field)
        value = self.metadata[field]
        if sha is None:
            if isinstance(value, (Path, str)):  # a fetched copy (str: path_format="str")
                data = Path(value).read_bytes()
                if store_value:
                    self.metadata[field] = data
                return data
            return bytes(value)
        data, cached = self._blob_bytes(sha, cache_on_disk)
        if store_value:
            self.metadata[field] = data
        elif cached is not None:
            self.metadata[field] = cached
        return data

    def download_file(self, target: str | os.PathLike[str] | None = None, redownload: bool = False) -> Path:
        """Copy (local root) or download (http root) the file: into the folder ``target``
        keeping its relative path, or to ``target`` itself when it names a file (an existing one,
        or a name with an extension); default folder :attr:`Datasource.default_dataset_location`.
        An existing file is kept unless ``redownload``.

        Returns:
            The written file.

        Raises:
            FileNotFoundError, httpx.HTTPStatusError: as :meth:`QueryResult.download_files`.
        """
        dest = Path(target).expanduser() if target is not None else self.datasource.default_dataset_location
        name = dest.name
        if not (dest.is_file() or ("." in name and not name.startswith(".") and not dest.is_dir())):
            dest = dest.joinpath(*self.path.split("/"))
        if dest.exists() and not redownload:
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(self.read())
        return dest

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


def download_url_maker(ds: Datasource) -> Callable[[str], str]:
    """A function: datapoint path -> its download URL (see :attr:`Datapoint.download_url`), with
    the per-datasource work (signing key, root URI) done once."""
    server = ds.engine.server_url
    if server:
        base = f"{server.rstrip('/')}/files/{ds.id}/"
        exp = int(time.time()) + DOWNLOAD_URL_TTL
        signer = _signing.Signer(ds.engine.secret(), "file", str(ds.id), exp)
        return lambda path: f"{base}{_signing.quote_path(path)}?exp={exp}&sig={signer(path)}"
    if _scan.is_http(ds.root):
        root = ds.root
        return lambda path: _scan.file_url(root, path)
    prefix = Path(ds.root).as_uri().rstrip("/") + "/"
    return lambda path: prefix + _signing.quote_path(path)


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


#: seconds a signed download URL of :attr:`Datapoint.download_url` stays valid
DOWNLOAD_URL_TTL = 7 * 86400

#: fields every datapoint has besides its metadata (``datapoint[name]``, dataframe columns)
_GENERATED: dict[str, Callable[[Datapoint], Any]] = {
    "path": lambda d: d.path,
    "datapoint_id": lambda d: d.datapoint_id,
    "dagshub_download_url": lambda d: d.download_url,
    "download_url": lambda d: d.download_url,
    "size": lambda d: d.size,
    "width": lambda d: d.width,
    "height": lambda d: d.height,
    "format": lambda d: d.format,
    "created_at": lambda d: d.created_at,
}


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
    def __getitem__(self, i: int | str) -> Datapoint: ...

    @overload
    def __getitem__(self, i: slice) -> list[Datapoint]: ...

    def __getitem__(self, i: int | str | slice) -> Datapoint | list[Datapoint]:
        """A datapoint by position, or by path (str, as DagsHub's ``QueryResult[path]``), or a
        list of datapoints for a slice.

        Raises:
            IndexError: a position out of range.
            KeyError: a path that is not in this result.
        """
        if isinstance(i, str):
            for d in self.entries:
                if d.path == i:
                    return d
            raise KeyError(f"no datapoint with path {i!r} in this result")
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
        query): columns ``path`` (str, relative to the root), ``datapoint_id`` (int),
        ``dagshub_download_url`` (str, :attr:`Datapoint.download_url`: a URL of the engine's
        server, of an http root, or a ``file://`` URL, so frameworks that load from a URL column
        work), ``size`` (bytes), ``width`` and ``height`` (pixels), ``format`` (str, e.g.
        "JPEG"), ``created_at`` (aware UTC datetime of registration), then one column per
        metadata field (sorted by name) holding the values as :attr:`Datapoint.metadata` has
        them (blob fields: the sha256 hex, or the bytes / cached path once loaded). Missing
        values are None/NaN; int columns with missing values become float."""
        import pandas as pd

        names = sorted({k for d in self.entries for k in d.metadata})
        base = ["path", "datapoint_id", "dagshub_download_url", "size", "width", "height", "format", "created_at"]
        url = download_url_maker(self.datasource)
        rows = [
            [d.path, d.datapoint_id, url(d.path), d.size, d.width, d.height, d.format, d.created_at]
            + [d.metadata.get(n) for n in names]
            for d in self.entries
        ]
        return pd.DataFrame(rows, columns=base + names)

    def get_blob_fields(
        self,
        *fields: str,
        load_into_memory: bool = False,
        cache_on_disk: bool = True,
        num_proc: int = 8,
        path_format: Literal["path", "str"] = "path",
        max_workers: int | None = None,
    ) -> QueryResult:
        """Fetch blob fields of every datapoint, as DagsHub's ``get_blob_fields``: each blob is
        saved to the datapoints' :attr:`Datapoint.blob_cache_location` and the field's value
        becomes the cached file's path (:class:`~pathlib.Path`, or str with ``path_format="str"``),
        or, with ``load_into_memory``, the bytes. Read in parallel with a thread pool; datapoints
        without a value are skipped.

        Args:
            fields: blob fields; none: every blob field of the datasource.
            load_into_memory: values become the bytes instead of paths.
            cache_on_disk: keep the blobs in the cache folder (required without
                ``load_into_memory``).
            num_proc: reader threads (``max_workers`` is datago's older name; it wins when given).
            path_format: ``"path"`` (Path values) or ``"str"``.

        Returns:
            self.

        Raises:
            TypeError: a field is not a blob field.
            ValueError: neither ``load_into_memory`` nor ``cache_on_disk``, or another
                ``path_format``.
            FileNotFoundError: a blob is missing from the store.
        """
        if not load_into_memory and not cache_on_disk:
            raise ValueError("get_blob_fields needs load_into_memory=True or cache_on_disk=True")
        if path_format not in ("path", "str"):
            raise ValueError(f"path_format must be 'path' or 'str', got {path_format!r}")
        if not fields:
            fields = tuple(n for n, t in self.datasource.fields.items() if t == "bytes")
        jobs = []
        for d in self.entries:
            for f in fields:
                if f in d.metadata:
                    sha = d._blob_sha(f)  # TypeError for a field that is not a blob field
                    if sha is not None or (load_into_memory and not isinstance(d.metadata[f], bytes)):
                        jobs.append((d, f, sha))

        def load(job: tuple[Datapoint, str, str | None]) -> None:
            d, f, sha = job
            if sha is None:  # a fetched copy, to be loaded into memory
                d.metadata[f] = Path(d.metadata[f]).read_bytes()
                return
            data, cached = d._blob_bytes(sha, cache_on_disk)
            if load_into_memory or cached is None:
                d.metadata[f] = data
            else:
                d.metadata[f] = str(cached) if path_format == "str" else cached

        with ThreadPoolExecutor(max_workers=max_workers or num_proc) as pool:
            list(pool.map(load, jobs))
        return self

    def download_files(
        self,
        target_dir: str | os.PathLike[str] | None = None,
        keep_source_prefix: bool = True,
        redownload: bool = False,
        path_field: str | None = None,
        progress: bool = True,
        max_workers: int = 8,
    ) -> Path:
        """Copy (local root) or download (http root) the files into ``target_dir`` keeping
        their relative paths, with a tqdm progress bar, as DagsHub's ``download_files``.

        Args:
            target_dir: default :attr:`Datasource.default_dataset_location`.
            keep_source_prefix: accepted for DagsHub's signature (a datasource's files are
                always relative to its root here).
            redownload: replace files that exist already (default: keep them).
            path_field: download the file named by this metadata field (a path relative to the
                root) instead of the datapoint's own file; datapoints without it are skipped.

        Returns:
            The folder the files are in.

        Raises:
            FileNotFoundError: a source file is missing.
            httpx.HTTPStatusError: a failed download.
        """
        target = Path(target_dir).expanduser() if target_dir is not None else self.datasource.default_dataset_location
        if path_field is None:
            rels = self.paths
        else:
            rels = [str(d.metadata[path_field]) for d in self.entries if d.metadata.get(path_field) is not None]
        if not redownload:
            rels = [r for r in rels if not target.joinpath(*r.split("/")).is_file()]
        _scan.download(self.datasource.root, rels, target, progress, max_workers)
        return target

    def visualize(self, open_browser: bool = True, page_size: int = 48, **kwargs: Any) -> str:
        """Open a gallery of this result's query (see :meth:`Datasource.visualize`).

        Returns:
            The gallery URL.
        """
        return self.datasource.visualize(open_browser=open_browser, page_size=page_size, **kwargs)

    def ml_dataset_config(self, client_config: Mapping[str, Any] | None = None, **source_config: Any) -> dict[str, Any]:
        """The datago client config (``{"source_type": "db", "source_config": {...}, ...}``)
        that streams the datapoints of this result's query (its datasource, condition and
        ``as_of``, re-evaluated by the server; ``select`` is not applied) through datago's
        ``db`` source.

        Without an ``api_url`` in ``source_config``, the engine's server is started in this
        process on 127.0.0.1 (once per engine, stopped at exit) and used with a key of its own;
        with one, that server is used (``api_key`` from ``source_config`` or
        ``$DATAROOM_API_KEY``), so the embedded and the team paths are the same code. With the
        in-process server and a local root, the core reads the datapoints' files from disk
        (``local_roots``: the server's file URL prefix of this datasource -> its root; paths that
        would leave the root are refused) and only the pages go over HTTP.

        Args:
            client_config: top-level client keys (``image_config``, ``limit``,
                ``samples_buffer_size``, ``rank``, ...) merged into the config.
            source_config: ``source_config`` entries overriding the defaults (``sources``: the
                datasource name, ``page_size``: 512, ``query``: the view's query as JSON,
                ``as_of``: µs since the epoch, ``local_roots``: see above; ``{}`` fetches every
                file from the server).
        """
        view = self.datasource
        config: dict[str, Any] = {"sources": view.name, "page_size": 512}
        if "api_url" not in source_config:
            base_url, api_key = view.engine.background_server()
            config.update(api_url=base_url + "/api/", api_key=api_key)
            if not _scan.is_http(view.root) and os.path.isdir(view.root):
                # same machine: the core reads the files instead of asking the server for them
                config["local_roots"] = {f"{base_url}/files/{view.id}/": os.path.abspath(view.root)}
        if view.query is not None:
            config["query"] = view.query.to_json()
        if view._as_of_us is not None:
            config["as_of"] = view._as_of_us
        config.update(source_config)
        return {**(client_config or {}), "source_type": "db", "source_config": config}

    def as_ml_dataset(self, flavor: str | Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        """A dataset for a machine-learning framework (DagsHub's form, ``flavor`` a str), or a
        ``datago.DatagoClient`` streaming this query's images (datago's form, ``flavor`` a
        client config dict or None).

        DagsHub's form, ``as_ml_dataset("torch" | "tensorflow", strategy=..., metadata_columns=...,
        tensorizers=..., savedir=..., processes=...)``: see :func:`datago.engine.ml.as_ml_dataset`
        (items are lists ``[file tensor, metadata tensors...]``).

        datago's form, ``as_ml_dataset(client_config, **source_config)``: a ``DatagoClient``
        (config from :meth:`ml_dataset_config`, same arguments). Iterate it (or use it as a
        context manager) for :class:`datago.Sample` objects whose ``id`` is the datapoint id as a
        str, ``source`` the datasource name and ``attributes`` the metadata fields (datetimes as
        ISO-8601 str, blobs as signed URLs; see :mod:`datago.engine.dataroom`).

        Raises:
            ImportError: the native datago client, torch or tensorflow is not available (the
                message says how to install it).
            ValueError: an unknown flavor or strategy, or a config entry datago refuses.
        """
        if isinstance(flavor, str):
            from .ml import as_ml_dataset

            return as_ml_dataset(self, flavor, **kwargs)
        if flavor is None:
            flavor = kwargs.pop("client_config", None)
        from datago import DatagoClient  # type: ignore[attr-defined]

        return DatagoClient(self.ml_dataset_config(flavor, **kwargs))

    def as_ml_dataloader(self, flavor: Any, **kwargs: Any) -> Any:
        """A data loader (DagsHub's ``as_ml_dataloader``): ``flavor`` is ``"torch"`` /
        ``"tensorflow"`` or a dataset from :meth:`as_ml_dataset`; keyword arguments of
        :meth:`as_ml_dataset` go to the dataset, the others to the loader (``batch_size``,
        ``num_workers``, ``collate_fn``, ... of ``torch.utils.data.DataLoader``). See
        :func:`datago.engine.ml.as_ml_dataloader`.

        Raises:
            ImportError, ValueError: as :meth:`as_ml_dataset`.
        """
        from .ml import as_ml_dataloader

        return as_ml_dataloader(self, flavor, **kwargs)
