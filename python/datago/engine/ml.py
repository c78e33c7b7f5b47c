"""DagsHub-compatible ML datasets over query results: ``as_ml_dataset(flavor, ...)`` and
``as_ml_dataloader(flavor_or_dataset, ...)`` (see :meth:`QueryResult.as_ml_dataset
<datago.engine.results.QueryResult.as_ml_dataset>`).

Every item is a list: the datapoint's file as a tensor, then one tensor (or value) per
``metadata_columns`` entry, as DagsHub's Data Engine gives them. The three strategies keep
DagsHub's meaning:

- ``"lazy"`` (default): a map-style ``torch.utils.data.Dataset``; item ``i`` fetches its file
  into ``savedir`` when it is first read.
- ``"preload"``: the same dataset, with every file fetched into ``savedir`` (``processes``
  threads) before it is returned.
- ``"background"``: an ``IterableDataset`` built on :class:`datago.torch.DatagoIterableDataset`:
  the Go core prefetches and decodes the images ahead of the loop (its own threads, outside the
  GIL). Items come in the core's order.

torch and tensorflow are imported only when a dataset of that flavor is made.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import scan as _scan

if TYPE_CHECKING:  # pragma: no cover
    from .results import QueryResult

__all__ = [
    "DATASET_KWARGS",
    "STRATEGIES",
    "as_ml_dataloader",
    "as_ml_dataset",
    "image_array",
]

STRATEGIES = ("lazy", "background", "preload")
#: keyword arguments of :func:`as_ml_dataset` (the others of :func:`as_ml_dataloader` go to the loader)
DATASET_KWARGS = frozenset(
    {"metadata_columns", "strategy", "tensorizers", "savedir", "processes", "file_columns", "client_config"}
)
#: file extensions the ``"auto"`` tensorizer takes for images
IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "ppm", "pgm", "pnm"})

TORCH_INSTALL = "as_ml_dataset(flavor='torch') needs PyTorch: pip install 'datago[torch]' (or: pip install torch)"
TF_INSTALL = "as_ml_dataset(flavor='tensorflow') needs TensorFlow: pip install tensorflow"

Tensorizer = str | Callable[[Any], Any]


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ImportError(TORCH_INSTALL) from exc
    return torch


def _tensorflow() -> Any:
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise ImportError(TF_INSTALL) from exc
    return tf


def image_array(path: str | Path) -> np.ndarray:
    """An image file as ``uint8`` ``(C, H, W)`` (1 channel for grey, 2 grey+alpha, 3 RGB, 4 RGBA;
    other modes converted to RGB/RGBA), as ``torchvision.io.read_image`` decodes it (EXIF
    orientation not applied).

    Raises:
        OSError: not a readable image (the message names the path).
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "LA", "RGB", "RGBA"):
                im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
            arr = np.asarray(im)
    except OSError as exc:
        raise OSError(f"cannot read image {str(path)!r}: {exc}") from exc
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.array(arr.transpose(2, 0, 1), order="C")  # a writable copy (torch.from_numpy)


class _TorchTensors:
    """The built-in tensorizers of the torch flavor."""

    @staticmethod
    def image(path: str) -> Any:
        """``torch.float32`` ``(C, H, W)``, values 0..255 (DagsHub's image tensorizer)."""
        torch = _torch()
        return torch.from_numpy(image_array(path)).to(torch.float32)

    @staticmethod
    def numeric(value: Any) -> Any:
        """``torch.float32`` scalar."""
        torch = _torch()
        return torch.tensor(value, dtype=torch.float32)


class _TfTensors:
    """The built-in tensorizers of the tensorflow flavor (numpy, converted by tf.data)."""

    @staticmethod
    def image(path: str) -> Any:
        """``float32`` ``(H, W, C)``, values 0..255 (TensorFlow's channel-last layout)."""
        return image_array(path).transpose(1, 2, 0).astype(np.float32)

    @staticmethod
    def numeric(value: Any) -> Any:
        return np.float32(value)


def _builtin(lib: Any, name: str) -> Callable[[Any], Any]:
    if name not in ("image", "numeric"):
        raise ValueError(
            f"unknown tensorizer {name!r}: use 'image', 'numeric' or a function (audio and video "
            "tensorizers are not available in datago)"
        )
    return getattr(lib, name)  # type: ignore[no-any-return]


class _Items:
    """What every dataset of a query result shares: the datapoints as plain rows (picklable:
    DataLoader worker processes receive a copy), the files' fetching into ``savedir``, and the
    tensorizers."""

    def __init__(
        self,
        result: QueryResult,
        metadata_columns: Sequence[str] = (),
        strategy: str = "lazy",
        tensorizers: str | Sequence[Tensorizer] | Callable[[list[Any]], Any] = "auto",
        savedir: str | Path | None = None,
        processes: int = 8,
        file_columns: Sequence[str] | None = None,
        tensorlib: Any = _TorchTensors,
    ) -> None:
        if isinstance(metadata_columns, str):
            metadata_columns = [metadata_columns]
        strategy = str(strategy).lower()
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
        if int(processes) < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        self.strategy = strategy
        self.metadata_columns = list(metadata_columns)
        self.root = result.datasource.root
        self.savedir = Path(savedir).expanduser() if savedir else result.datasource.default_dataset_location
        self.processes = int(processes)
        self.file_columns = set(file_columns or ())
        self.tensorlib = tensorlib
        missing = object()
        self.rows: list[tuple[int, str, list[Any]]] = []
        for d in result.entries:
            values = []
            for c in self.metadata_columns:
                try:
                    values.append(d[c])
                except KeyError:
                    values.append(missing)
            self.rows.append((d.datapoint_id, d.path, values))
        self._missing = missing
        self.tensorizers = self._resolve(tensorizers)

    # -- files -----------------------------------------------------------------------------
    def local(self, rel: str) -> str:
        """The file ``rel`` (relative to the root) in ``savedir``, fetched there first if it is
        not there yet (copied from a local root, downloaded from an http root).

        Raises:
            FileNotFoundError: not a file under the root.
            httpx.HTTPStatusError: a failed download.
        """
        dest = self.savedir.joinpath(*rel.split("/"))
        if not dest.is_file():
            _scan.download(self.root, [rel], self.savedir, progress=False, max_workers=1)
        return str(dest)

    def pull(self) -> None:
        """Fetch every datapoint's files (and the file columns') into ``savedir`` with
        ``processes`` threads."""
        rels = []
        for _, path, values in self.rows:
            rels.append(path)
            for c, v in zip(self.metadata_columns, values, strict=True):
                if c in self.file_columns and v is not self._missing and v is not None:
                    rels.append(str(v))
        todo = [r for r in dict.fromkeys(rels) if not self.savedir.joinpath(*r.split("/")).is_file()]
        if todo:
            _scan.download(self.root, todo, self.savedir, progress=False, max_workers=self.processes)

    def raw(self, idx: int) -> list[Any]:
        """Item ``idx`` before tensorizing: the local file's path (str), then each metadata
        column's value (file columns: the local path).

        Raises:
            KeyError: a datapoint without a value for a metadata column.
        """
        _, path, values = self.rows[idx]
        out: list[Any] = [self.local(path)]
        for c, v in zip(self.metadata_columns, values, strict=True):
            if v is self._missing:
                raise KeyError(f"datapoint {path!r} has no value for metadata column {c!r}")
            out.append(self.local(str(v)) if c in self.file_columns else v)
        return out

    # -- tensorizers -----------------------------------------------------------------------
    def _is_image_path(self, value: Any) -> bool:
        return isinstance(value, str) and value.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS and "." in value

    def _resolve(self, spec: Any) -> list[Callable[[Any], Any]] | Callable[[list[Any]], Any]:
        """The tensorizers as one function per item element, or one function of the whole item."""
        n = len(self.metadata_columns) + 1
        lib = self.tensorlib
        if callable(spec) and not isinstance(spec, str):
            return spec  # type: ignore[no-any-return]
        if isinstance(spec, str):
            if spec in ("auto", "guess"):
                return self._auto()
            # one type for every element (DagsHub's "image": metadata columns name image files)
            for c in self.metadata_columns:
                self.file_columns.add(c)
            return [_builtin(lib, spec)] * n
        spec = list(spec)
        if len(spec) != n:
            raise ValueError(
                f"tensorizers has {len(spec)} entries; it needs {n}: one for the file, then one per "
                f"metadata column {self.metadata_columns}"
            )
        out: list[Callable[[Any], Any]] = []
        for i, t in enumerate(spec):
            if isinstance(t, str):
                if i and t == "image":
                    self.file_columns.add(self.metadata_columns[i - 1])
                out.append(_builtin(lib, t))
            elif callable(t):
                out.append(t)
            else:
                raise TypeError(f"a tensorizer is 'image', 'numeric' or a function, got {t!r}")
        return out

    def _auto(self) -> list[Callable[[Any], Any]]:
        """Guess from the first datapoint: images by extension, numbers as numeric; anything
        else is a ValueError asking for explicit tensorizers."""
        lib = self.tensorlib
        if not self.rows:
            return [lib.image] + [lib.numeric] * len(self.metadata_columns)
        _, path, values = self.rows[0]
        if not self._is_image_path(path):
            raise ValueError(
                f"tensorizers='auto' cannot tensorize the file {path!r} (not an image extension): "
                "pass tensorizers=[...] with a function for the file"
            )
        out: list[Callable[[Any], Any]] = [lib.image]
        for c, v in zip(self.metadata_columns, values, strict=True):
            if isinstance(v, (bool, int, float, np.number)):
                out.append(lib.numeric)
            elif self._is_image_path(v):
                self.file_columns.add(c)
                out.append(lib.image)
            else:
                raise ValueError(
                    f"tensorizers='auto' cannot tensorize metadata column {c!r} (value {v!r}): pass "
                    "tensorizers=[...] with 'numeric', 'image' or a function per column"
                )
        return out

    def tensorize(self, raw: list[Any]) -> Any:
        t = self.tensorizers
        if callable(t):
            return t(raw)
        return [f(v) for f, v in zip(t, raw, strict=True)]


def _map_dataset_class() -> type:
    torch = _torch()

    class QueryDataset(_Items, torch.utils.data.Dataset):  # type: ignore[misc,name-defined]
        """A map-style ``torch.utils.data.Dataset`` over a query result (strategies ``"lazy"``
        and ``"preload"``): ``len()`` is the number of datapoints, item ``i`` the list ``[file
        tensor, metadata...]`` of datapoint ``i`` in result order.

        Attributes:
            strategy, metadata_columns, savedir (Path), processes, tensorizers, type ("torch").
        """

        type = "torch"

        def __init__(self, result: QueryResult, **kwargs: Any) -> None:
            _Items.__init__(self, result, **kwargs)
            if self.strategy == "preload":
                self.pull()

        def __len__(self) -> int:
            return len(self.rows)

        def __getitem__(self, idx: int) -> Any:
            return self.tensorize(self.raw(idx))

    QueryDataset.__qualname__ = "QueryDataset"  # pickled by reference (module __getattr__)
    QueryDataset.__module__ = __name__
    return QueryDataset


def _iterable_dataset_class() -> type:
    torch = _torch()
    from datago.torch import DatagoIterableDataset

    class BackgroundDataset(torch.utils.data.IterableDataset):  # type: ignore[misc,name-defined]
        """Strategy ``"background"``: a ``torch.utils.data.IterableDataset`` over
        :class:`datago.torch.DatagoIterableDataset` of the query (the Go core fetches and
        decodes ahead). Items: ``[image, metadata...]`` with the image ``torch.float32``
        ``(C, H, W)`` 0..255 as decoded by the core (``client_config`` may add
        ``image_config``, e.g. ``crop_and_resize``), the metadata tensorized as in the lazy
        strategy. A function given as the file's tensorizer receives the file's local path in
        ``savedir`` instead (fetched then). ``len()`` is the number of datapoints; items come in
        the core's order (``shuffle=True`` in :func:`as_ml_dataloader` turns on
        ``random_sampling``).

        Attributes:
            source: the :class:`~datago.torch.DatagoIterableDataset` (``set_epoch``,
                ``state_dict``, ``load_state_dict``), type ("torch"), strategy ("background").
        """

        type = "torch"

        def __init__(self, result: QueryResult, client_config: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
            super().__init__()
            self.items = _Items(result, **kwargs)
            self.strategy = "background"
            self.source = DatagoIterableDataset(result, dict(client_config or {}), fields=("id",))
            self._index = {dp_id: i for i, (dp_id, _, _) in enumerate(self.items.rows)}

        def __len__(self) -> int:
            return len(self.items.rows)

        def set_epoch(self, epoch: int) -> None:
            """See :meth:`datago.torch.DatagoIterableDataset.set_epoch`."""
            self.source.set_epoch(epoch)

        def shuffle(self, seed: int | None = None) -> None:
            """Read in a random order each epoch (the db source's ``random_sampling``)."""
            sc = self.source.config.setdefault("source_config", {})
            sc["random_sampling"] = True
            if seed is not None:
                sc["seed"] = int(seed)

        def __iter__(self) -> Iterator[Any]:
            torch = _torch()
            items = self.items
            tz = items.tensorizers
            for item in self.source:
                idx = self._index.get(int(item["id"]))
                if idx is None:  # a datapoint added after the query ran
                    continue
                image = item.get("image")
                if image is None or callable(tz) or tz[0] is not items.tensorlib.image:
                    raw = items.raw(idx)
                    if callable(tz):
                        yield tz(raw)
                        continue
                    yield [f(v) for f, v in zip(tz, raw, strict=True)]
                    continue
                if image.ndim == 2:
                    image = image[:, :, None]
                _, path, values = items.rows[idx]
                out = [torch.as_tensor(image).permute(2, 0, 1).to(torch.float32)]
                for c, f, v in zip(items.metadata_columns, tz[1:], values, strict=True):
                    if v is items._missing:
                        raise KeyError(f"datapoint {path!r} has no value for metadata column {c!r}")
                    out.append(f(items.local(str(v)) if c in items.file_columns else v))
                yield out

    BackgroundDataset.__qualname__ = "BackgroundDataset"
    BackgroundDataset.__module__ = __name__
    return BackgroundDataset


@functools.cache
def _classes() -> tuple[type, type]:
    return _map_dataset_class(), _iterable_dataset_class()


def __getattr__(name: str) -> Any:  # QueryDataset / BackgroundDataset, made on first use (torch)
    if name == "QueryDataset":
        return _classes()[0]
    if name == "BackgroundDataset":
        return _classes()[1]
    raise AttributeError(name)


def as_ml_dataset(result: QueryResult, flavor: str, **kwargs: Any) -> Any:
    """A dataset of ``result`` for a framework, as DagsHub's ``QueryResult.as_ml_dataset``.

    Args:
        result: the query result.
        flavor: ``"torch"`` (a ``torch.utils.data.Dataset``; ``IterableDataset`` for the
            ``"background"`` strategy) or ``"tensorflow"`` (a ``tf.data.Dataset``).
        metadata_columns: fields added to each item after the file (metadata, or the generated
            ``path``, ``datapoint_id``, ``size``, ``width``, ``height``, ...). Default none.
        strategy: ``"lazy"`` (default), ``"background"`` or ``"preload"`` (see the module).
        tensorizers: ``"auto"`` (default: the file by its extension, numbers as ``numeric``),
            ``"image"`` (every element is an image file: metadata columns name files relative to
            the root), a list with one entry per element (``"image"``, ``"numeric"`` or a
            function of the value; the file's function receives its local path), or one
            function of the whole raw item list.
        savedir: where files are fetched to (default ``Datasource.default_dataset_location``).
        processes: threads fetching files for ``"preload"`` (default 8).
        file_columns: metadata columns whose values are file paths relative to the root.
        client_config: (``"background"``) datago client keys for the core, e.g.
            ``{"image_config": {...}}``.

    Items: torch: ``[torch.float32 (C, H, W) 0..255, tensors...]``; tensorflow: ``(float32 (H, W,
    C), ...)`` tuples.

    Raises:
        ImportError: torch / tensorflow is not installed (the message says how to install it).
        ValueError: an unknown flavor, strategy or tensorizer, or a tensorizer list of the wrong
            length; ``"auto"`` on values it cannot guess.
    """
    flavor = str(flavor).lower()
    unknown = set(kwargs) - DATASET_KWARGS - {"for_dataloader"}
    if unknown:
        raise TypeError(f"as_ml_dataset() got unexpected keyword arguments {sorted(unknown)}")
    kwargs.pop("for_dataloader", None)
    if flavor == "torch":
        query_dataset, background_dataset = _classes()
        if str(kwargs.get("strategy", "lazy")).lower() == "background":
            return background_dataset(result, **kwargs)
        kwargs.pop("client_config", None)
        return query_dataset(result, **kwargs)
    if flavor == "tensorflow":
        tf = _tensorflow()
        kwargs.pop("client_config", None)
        strategy = str(kwargs.get("strategy", "lazy")).lower()
        items = _Items(result, tensorlib=_TfTensors, **kwargs)
        if strategy in ("preload", "background"):
            items.pull()  # tf.data reads ahead itself (prefetch); files are local before the first item
        return _tf_dataset(tf, items)
    raise ValueError(f"unknown flavor {flavor!r}: use 'torch' or 'tensorflow'")


def _tf_dataset(tf: Any, items: _Items) -> Any:
    """A ``tf.data.Dataset`` of ``items`` (tuples), with ``len()`` and ``builder``."""

    def generator() -> Iterator[tuple[Any, ...]]:
        for i in range(len(items.rows)):
            yield tuple(items.tensorize(items.raw(i)))

    first = items.tensorize(items.raw(0)) if items.rows else [np.zeros((1, 1, 3), np.float32)]
    signature = tuple(
        tf.TensorSpec(
            shape=(None, None, np.shape(v)[2]) if np.ndim(v) == 3 else np.shape(v),  # images vary in size
            dtype=tf.as_dtype(np.asarray(v).dtype),
        )
        for v in first
    )
    ds = tf.data.Dataset.from_generator(generator, output_signature=signature)
    ds.builder = items
    ds.type = "tensorflow"
    return ds


def as_ml_dataloader(result: QueryResult, flavor: Any, **kwargs: Any) -> Any:
    """A data loader, as DagsHub's ``QueryResult.as_ml_dataloader``.

    Args:
        result: the query result.
        flavor: ``"torch"`` / ``"tensorflow"``, or a dataset made by :func:`as_ml_dataset`.
        kwargs: :data:`DATASET_KWARGS` go to :func:`as_ml_dataset` (with a str flavor); the
            others to ``torch.utils.data.DataLoader`` (``batch_size``, ``shuffle``,
            ``num_workers``, ``collate_fn``, ...), or for tensorflow ``batch_size`` to
            ``Dataset.batch``. With the ``"background"`` strategy, ``shuffle=True`` turns on the
            core's ``random_sampling`` (a DataLoader cannot shuffle an IterableDataset).

    Raises:
        ImportError, ValueError: as :func:`as_ml_dataset`; TypeError: a flavor that is neither.
    """
    ds_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in DATASET_KWARGS}
    if isinstance(flavor, str):
        dataset = as_ml_dataset(result, flavor, **ds_kwargs)
    else:
        if ds_kwargs:
            raise TypeError(f"dataset arguments {sorted(ds_kwargs)} need a flavor str, not a dataset")
        dataset = flavor
    kind = getattr(dataset, "type", None)
    if kind == "tensorflow":
        batch_size = kwargs.pop("batch_size", 1)
        if kwargs:
            raise TypeError(f"unexpected arguments for a tensorflow loader: {sorted(kwargs)}")
        return dataset.batch(batch_size)
    torch = _torch()
    if not isinstance(dataset, torch.utils.data.Dataset):
        raise TypeError(f"flavor must be 'torch', 'tensorflow' or a dataset, got {type(flavor).__name__}")
    if isinstance(dataset, torch.utils.data.IterableDataset) and kwargs.get("shuffle"):
        kwargs.pop("shuffle")
        if hasattr(dataset, "shuffle"):
            dataset.shuffle()
    return torch.utils.data.DataLoader(dataset, **kwargs)
