"""PyTorch integration: an ``IterableDataset`` over any datago config or engine query.

``import datago`` never imports torch; ``import datago.torch`` does (``pip install 'datago[torch]'``).

The recommended use is one process per rank with ``num_workers=0``: the Go core already decodes and
resizes with a pool of threads outside the GIL, so DataLoader worker processes add nothing but a
copy through shared memory::

    ds = DatagoIterableDataset(config)                 # config with batch_size: yields batches
    loader = DataLoader(ds, batch_size=None, num_workers=0, pin_memory=True)
    for epoch in range(start_epoch, epochs):
        ds.set_epoch(epoch)
        for batch in loader:                           # {"images": uint8 (N, C, H, W), "ids": [...], ...}
            ...

DataLoader workers (``num_workers > 0``) work under the ``spawn`` and ``forkserver`` start methods:
worker ``w`` of rank ``r`` reads part ``r * num_workers + w`` of ``world_size * num_workers``
disjoint parts, with the core's ``num_threads`` divided between the workers. Under ``fork`` with
the library already loaded in the parent, the worker raises :class:`datago.ForkError`.

Resuming: with ``num_workers=0`` the dataset's :meth:`~DatagoIterableDataset.state_dict` is the
resume point after the last batch the loop received. With workers the main process cannot see the
workers' clients: every item from a worker carries the worker's state under ``"datago_state"``, and
:class:`StatefulLoader` (a DataLoader wrapper) keeps the latest one per worker and strips it.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

try:
    import torch
    import torch.distributed
    from torch.utils.data import DataLoader, IterableDataset, get_worker_info
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError("datago.torch needs PyTorch: pip install 'datago[torch]' (torch>=2.1)") from exc

import numpy as np

from . import _lib
from ._lib import ForkError

__all__ = [
    "FIELDS",
    "STATE_KEY",
    "DatagoIterableDataset",
    "StatefulLoader",
    "default_rank_world_size",
    "merge_state_dicts",
]

#: Metadata a dataset can add to each item (``fields=``), besides the images.
FIELDS = frozenset({"id", "source", "attributes", "original_size", "bucket", "masks", "additional_images", "latents"})
#: Key of the worker's resume state in every yielded item (dropped by :class:`StatefulLoader`).
STATE_KEY = "datago_state"
_LOADER_STATE_FORMAT = "datago.torch.loader/1"

_FORK_ADVICE = (
    "datago's Go runtime is already loaded in the parent process, and a DataLoader worker was "
    "forked from it: the Go runtime does not survive fork(). Either use num_workers=0 (recommended: "
    "the Go core already runs its own decode threads), or start workers with "
    "DataLoader(..., multiprocessing_context='spawn') (or 'forkserver'), or do not create a datago "
    "client in the parent before the DataLoader forks."
)


def default_rank_world_size() -> tuple[int, int]:
    """This process's (rank, world_size): from ``torch.distributed`` when it is initialised, else
    from the ``RANK`` / ``WORLD_SIZE`` environment variables, else (0, 1).

    Raises:
        ValueError: ``RANK`` or ``WORLD_SIZE`` is not an integer.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    values = []
    for name, default in (("RANK", 0), ("WORLD_SIZE", 1)):
        text = os.environ.get(name, "").strip()
        try:
            values.append(int(text) if text else default)
        except ValueError:
            raise ValueError(f"environment variable {name} must be an integer, got {text!r}") from None
    return values[0], values[1]


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _explicit(config: Mapping[str, Any], key: str) -> int | None:
    """The config's own rank / world_size (source_config wins over the top level; -1 is unset)."""
    source = config.get("source_config")
    for scope in (source if isinstance(source, Mapping) else {}, config):
        value = scope.get(key)
        if value is not None and value != -1:
            return int(value)
    return None


def _is_loader_state(state: Mapping[str, Any]) -> bool:
    return state.get("format") == _LOADER_STATE_FORMAT


class DatagoIterableDataset(IterableDataset):
    """Streams a datago source as torch tensors: batches when the config has ``batch_size``,
    samples otherwise.

    Args:
        source: a datago config (dict or JSON string; any source type: ``file``, ``webdataset``,
            ``db``), or an engine query result (anything with ``ml_dataset_config``, e.g.
            ``ds[ds["label"] == "cat"].all()``), which becomes a ``db`` config served by the
            engine (its server runs in this process; workers reach it over 127.0.0.1).
        client_config: top-level keys merged into the config (e.g. ``{"batch_size": 32,
            "image_layout": "CHW"}``); for a query result, the client settings
            (``image_config``, ``batch_size``, ...), whose ``source_config`` entries (e.g.
            ``random_sampling``) override the db source's.
        fields: metadata added to every item besides the images, any of :data:`FIELDS`.
        rank, world_size: this process's share. Default: the config's own ``rank`` /
            ``world_size`` (``source_config`` or top level), else ``torch.distributed`` when it is
            initialised, else ``RANK`` / ``WORLD_SIZE``, else 0 / 1. Resolved at construction.

    Items (dicts). With ``batch_size`` (N images of one bucket, ``(W, H)`` pixels):

    - ``"images"``: ``torch.uint8`` ``(N, H, W, C)``, or ``(N, C, H, W)`` with ``image_layout``
      ``"CHW"``; it shares the batch's C memory (no copy) in the process that reads it.
    - ``"ids"``, ``"sources"``: ``list[str]``; ``"attributes"``: ``list[dict]``;
      ``"original_sizes"``: ``torch.int64`` ``(N, 2)`` (W, H) of the upright source images;
      ``"bucket"``: ``(W, H)``; ``"masks"``: ``dict[str, uint8 (N, H, W)]``;
      ``"additional_images"``: ``dict[str, tensor like images]``; ``"latents"``: ``list[dict]``
      — each only when asked for in ``fields`` (``id`` -> ``ids``, ``original_size`` ->
      ``original_sizes``, ...).

    Without ``batch_size``: ``"image"`` ``torch.uint8`` ``(H, W, C)`` (``(C, H, W)`` with
    ``image_layout`` ``"CHW"``; a copy, since images differ in size; None for a metadata-only db
    row), and ``"id"``, ``"source"``, ``"attributes"``, ``"original_size"`` (W, H), ``"bucket"``,
    ``"masks"`` (``dict[str, uint8 (H, W)]``), ``"additional_images"``, ``"latents"`` as asked.

    In a DataLoader worker, every item also carries ``"datago_state"``: ``{"worker",
    "num_workers", "part", "parts", "epoch", "state"}``, the resume point of the worker that
    produced it after that item (in this process, :meth:`state_dict` is that point).

    Use it with ``DataLoader(ds, batch_size=None, ...)``. It pickles (only the config is kept;
    the client is created lazily in the process that iterates). One iteration at a time.

    Raises:
        ValueError: an unknown field, or a rank outside [0, world_size).
        TypeError: ``source`` is neither a config nor a query result.

    Iterating raises what the client raises (``ValueError`` naming a bad config key or a state that
    does not fit, ``FileNotFoundError``, ``OSError``), and :class:`datago.ForkError` in a worker
    forked from a process that had loaded the library.
    """

    def __init__(
        self,
        source: Mapping[str, Any] | str | Any,
        client_config: Mapping[str, Any] | None = None,
        *,
        fields: Sequence[str] = ("id",),
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(source, str):
            config = json.loads(source)
        elif isinstance(source, Mapping):
            config = copy.deepcopy(dict(source))
        elif hasattr(source, "ml_dataset_config"):
            settings = copy.deepcopy(dict(client_config or {}))
            config = source.ml_dataset_config(settings, **settings.pop("source_config", {}))
            client_config = None
        else:
            raise TypeError(
                f"source must be a datago config (dict or JSON) or an engine query result, not {type(source).__name__}"
            )
        if client_config:
            config.update(copy.deepcopy(dict(client_config)))
        unknown = sorted(set(fields) - FIELDS)
        if unknown:
            raise ValueError(f"unknown fields {unknown}; choose from {sorted(FIELDS)}")
        default_rank, default_world = default_rank_world_size()
        cfg_rank, cfg_world = _explicit(config, "rank"), _explicit(config, "world_size")
        self.rank = rank if rank is not None else cfg_rank if cfg_rank is not None else default_rank
        self.world_size = (
            world_size if world_size is not None else cfg_world if cfg_world is not None else default_world
        )
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be in [0, world_size={self.world_size}), got rank={self.rank}")
        self.config: dict[str, Any] = config
        self.fields = tuple(fields)
        self.batched = bool(config.get("batch_size") or 0)
        self.chw = str(config.get("image_layout", "HWC")).upper() == "CHW"
        self.epoch = int(config.get("epoch", 0) or 0)
        self._pending: dict[str, Any] | None = None  # state to resume from at the next iteration
        self._client: Any = None
        self._client_key: tuple[int, int, int] | None = None
        self._last_state: dict[str, Any] | None = None  # snapshot taken when an iteration ended
        self._running = False  # an iteration of this process is under way
        self._generation = 0  # counts iterations, so that a stale one never stops a newer one

    # -- pickling: only the config crosses process boundaries ------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None
        state["_client_key"] = None
        state["_last_state"] = None
        state["_running"] = False
        return state

    # -- epochs and state ------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next iteration (seeded order, like ``DistributedSampler.set_epoch``).

        A state loaded for another epoch is dropped. With DataLoader workers, call it before
        ``iter(loader)`` (workers receive a copy of the dataset then; ``persistent_workers=True``
        keeps the old copy).
        """
        self.epoch = int(epoch)
        if self._pending is not None and int(self._pending.get("epoch", self.epoch)) != self.epoch:
            self._pending = None
        self._last_state = None

    def state_dict(self) -> dict[str, Any] | None:
        """The resume point after the last item this process's iteration yielded: the client's
        ``state_dict()`` (JSON-able; see the README), or the state loaded and not yet used, or None
        before anything was read this epoch.

        With DataLoader workers (``num_workers > 0``) this process reads nothing: use
        :class:`StatefulLoader`, whose ``state_dict`` holds one state per worker.
        """
        if self._client is not None and self._client_key is not None and self._client_key[0] == os.getpid():
            if self._running:
                return self._client.state_dict()
            if self._last_state is not None:
                return copy.deepcopy(self._last_state)
        return copy.deepcopy(self._pending)

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Resume at the next iteration right after ``state``: a client state (from
        :meth:`state_dict`), a :class:`StatefulLoader` state (one state per worker), or a global
        state merged with :func:`merge_state_dicts` (then any rank / worker count may resume it:
        the parts deliver exactly what no old part had delivered). The dataset's epoch becomes the
        state's epoch.

        Raises:
            ValueError: a loader state saved with a different number of workers on a multi-rank
                run (merge the ranks' states with :func:`merge_state_dicts` first).
        """
        if state is None:
            self._pending = None
            return
        self._pending = copy.deepcopy(dict(state))
        if "epoch" in state:
            self.epoch = int(state["epoch"])
        self._last_state = None

    def _state_for_part(self, worker: int, num_workers: int) -> dict[str, Any] | None:
        """The client state worker ``worker`` of ``num_workers`` resumes from (None: from the start)."""
        state = self._pending
        if state is None:
            return None
        if _is_loader_state(state):
            workers = state.get("workers") or []
            if len(workers) == num_workers and state.get("world_size") == self.world_size:
                entry = workers[worker]
                return None if entry is None else dict(entry)
            if state.get("world_size", 1) != 1 or self.world_size != 1:
                raise ValueError(
                    f"this state was saved with {len(workers)} DataLoader workers per rank and "
                    f"world_size={state.get('world_size')}; resuming with {num_workers} workers and "
                    f"world_size={self.world_size} needs one global state: all-gather every rank's "
                    "state_dict() and load datago.torch.merge_state_dicts(states) on every rank"
                )
            return merge_state_dicts([state])
        return dict(state)

    # -- iteration -------------------------------------------------------------------------------
    def part_config(self, worker: int = 0, num_workers: int = 1) -> dict[str, Any]:
        """The client config of worker ``worker`` of ``num_workers``: part ``rank * num_workers +
        worker`` of ``world_size * num_workers``, with ``num_threads`` (default: the usable cores)
        divided between the workers (at least 1 each)."""
        cfg = copy.deepcopy(self.config)
        source = cfg.get("source_config")
        if isinstance(source, dict):
            source.pop("rank", None)
            source.pop("world_size", None)
        cfg.pop("epoch", None)
        if not self.batched:
            cfg.pop("image_layout", None)  # samples are laid out here (see _image_tensor)
        cfg["rank"] = self.rank * num_workers + worker
        cfg["world_size"] = self.world_size * num_workers
        if num_workers > 1:
            threads = int(cfg.get("num_threads") or 0) or _usable_cores()
            cfg["num_threads"] = max(1, threads // num_workers)
            if cfg.get("max_connections"):
                cfg["max_connections"] = max(1, int(cfg["max_connections"]) // num_workers)
        return cfg

    def _get_client(self, worker: int, num_workers: int) -> Any:
        key = (os.getpid(), worker, num_workers)
        if self._client is not None and self._client_key == key:
            return self._client
        try:
            _lib.lib()
        except ForkError as exc:
            raise ForkError(f"{_FORK_ADVICE} ({exc})") from None
        from .client import DatagoClient

        self._client = None
        self._client = DatagoClient(self.part_config(worker, num_workers))
        self._client_key = key
        return self._client

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        client = self._get_client(worker, num_workers)
        client.stop()  # idempotent; a start after a stop is a new epoch
        resume = self._state_for_part(worker, num_workers)
        self._last_state = None
        client.set_epoch(self.epoch)
        if resume is not None:
            client.load_state_dict(resume)  # a state that does not fit raises here, and stays loaded
        self._pending = None
        client.start()
        self._generation += 1
        generation = self._generation
        self._running = True
        part, parts = self.rank * num_workers + worker, self.world_size * num_workers
        meta = {"worker": worker, "num_workers": num_workers, "part": part, "parts": parts}
        get = client.get_batch if self.batched else client.get_sample
        convert = self._batch_item if self.batched else self._sample_item
        try:
            while (item := get()) is not None:
                out = convert(item)
                del item
                if info is not None:  # in a worker, the item is the only way out for its state
                    out[STATE_KEY] = {**meta, "epoch": self.epoch, "state": client.state_dict()}
                yield out
        finally:
            if generation == self._generation:
                self._last_state = client.state_dict()
                self._running = False
                client.stop()

    # -- conversion ------------------------------------------------------------------------------
    def _batch_item(self, batch: Any) -> dict[str, Any]:
        images = batch.images
        out: dict[str, Any] = {"images": torch.from_numpy(images)}
        f = self.fields
        if "id" in f:
            out["ids"] = list(batch.ids)
        if "source" in f:
            out["sources"] = list(batch.sources)
        if "attributes" in f:
            out["attributes"] = list(batch.attributes)
        if "original_size" in f:
            sizes = [list(size) for size in batch.original_sizes]
            out["original_sizes"] = torch.tensor(sizes, dtype=torch.int64).reshape(-1, 2)
        if "bucket" in f:
            out["bucket"] = tuple(int(v) for v in batch.bucket)
        if "masks" in f:
            out["masks"] = {k: torch.from_numpy(v) for k, v in batch.masks.items()}
        if "additional_images" in f:
            out["additional_images"] = {k: torch.from_numpy(v) for k, v in batch.additional_images.items()}
        if "latents" in f:
            out["latents"] = list(batch.latents)
        return out

    def _image_tensor(self, array: np.ndarray) -> torch.Tensor:
        if array.ndim == 2:
            array = array[:, :, None]
        if self.chw:
            array = array.transpose(2, 0, 1)
        return torch.from_numpy(np.array(array, order="C"))  # a writable, contiguous copy

    def _sample_item(self, sample: Any) -> dict[str, Any]:
        array = sample.image_array  # None for a metadata-only row (db, require_images false)
        out: dict[str, Any] = {"image": None if array is None else self._image_tensor(array)}
        f = self.fields
        if "id" in f:
            out["id"] = sample.id
        if "source" in f:
            out["source"] = sample.source
        if "attributes" in f:
            out["attributes"] = sample.attributes
        if "original_size" in f:
            out["original_size"] = (int(sample.original_width), int(sample.original_height))
        if "bucket" in f:
            out["bucket"] = None if array is None else (int(array.shape[1]), int(array.shape[0]))
        if "masks" in f:
            out["masks"] = {
                k: torch.from_numpy(np.array(v[..., 0] if v.ndim == 3 else v)) for k, v in sample.mask_arrays.items()
            }
        if "additional_images" in f:
            out["additional_images"] = {k: self._image_tensor(v) for k, v in sample.additional_image_arrays.items()}
        if "latents" in f:
            out["latents"] = sample.latents
        return out


def merge_state_dicts(states: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
    """One global resume state from every rank's state, typically gathered with
    ``torch.distributed.all_gather_object``: :class:`StatefulLoader` states (each holding one state
    per DataLoader worker) and/or client states (:meth:`DatagoIterableDataset.state_dict` with
    ``num_workers=0``). Every rank then loads the same result; with another world_size or worker
    count the parts deliver exactly what no old part had delivered (folder and db sources; see
    ``datago.merge_state_dicts``).

    A worker that had delivered nothing since the start of its epoch counts as at its start.

    Raises:
        ValueError: nothing delivered by any worker, or states that are not every part of one run
            (named by ``datago.merge_state_dicts``).
    """
    import datago

    flat: list[dict[str, Any]] = []
    missing: list[int] = []
    for state in states:
        if state is None:
            continue
        if _is_loader_state(state):
            workers = list(state.get("workers") or [])
            for w, entry in enumerate(workers):
                if entry is None:
                    missing.append(int(state["rank"]) * len(workers) + w)
                else:
                    flat.append(copy.deepcopy(dict(entry)))
        else:
            flat.append(copy.deepcopy(dict(state)))
    if not flat:
        raise ValueError("merge_state_dicts: no worker has delivered anything (resume from the start instead)")
    for part in missing:  # nothing delivered since the epoch started: the start of its part
        flat.append({**copy.deepcopy(flat[0]), "rank": part, "consumed": 0, "pending": []})
    return datago.merge_state_dicts(flat)


def _part_start_state(state: Mapping[str, Any], part: int, parts: int) -> dict[str, Any]:
    """The state the client of part ``part`` of ``parts`` reports right after loading ``state``,
    before its first item (a merged state becomes that part's own)."""
    if not state.get("merged"):
        return copy.deepcopy(dict(state))
    phases = list(state.get("phases") or [])
    last = phases[-1] if phases else None
    if last is not None and last.get("world_size") == parts and len(last.get("ranks") or []) == parts:
        current, history = last["ranks"][part], phases[:-1]
    else:
        current, history = {"consumed": 0, "pending": []}, phases
    out = {k: copy.deepcopy(v) for k, v in state.items() if k != "merged"}
    out.update(
        rank=part,
        world_size=parts,
        phases=copy.deepcopy(history),
        consumed=int(current["consumed"]),
        pending=sorted(int(s) for s in current["pending"]),
    )
    return out


class StatefulLoader:
    """A ``DataLoader(dataset, batch_size=None, ...)`` that keeps the latest resume state of each
    worker, so that ``state_dict()`` is the resume point after the last item the loop received,
    with or without worker processes.

    Args:
        dataset: the dataset.
        num_workers: DataLoader worker processes (0: read in this process, recommended).
        pin_memory: as DataLoader's.
        keep_state: with workers, leave ``"datago_state"`` in the yielded items (default: removed).
        **loader_kwargs: more DataLoader arguments (``prefetch_factor``, ``timeout``, ...). With
            workers and no ``multiprocessing_context``, ``"spawn"`` is used when the default start
            method is ``fork``: torch's workers notice the death of their parent process, and
            under ``forkserver`` their parent is the fork server, which outlives a killed main
            process, so the workers would run on.

    Raises:
        ValueError: ``batch_size``/``sampler``/``collate_fn`` given (the dataset batches), or
            ``persistent_workers=True`` (the workers would miss ``set_epoch`` and
            ``load_state_dict``).

    ``state_dict()`` returns ``{"format": "datago.torch.loader/1", "epoch", "rank", "world_size",
    "num_workers", "workers": [client state or None per worker]}`` (JSON-able). Save one per rank,
    or all-gather them and save ``merge_state_dicts(states)`` once.
    """

    def __init__(
        self,
        dataset: DatagoIterableDataset,
        num_workers: int = 0,
        pin_memory: bool = False,
        keep_state: bool = False,
        **loader_kwargs: Any,
    ) -> None:
        for key in ("batch_size", "sampler", "batch_sampler", "collate_fn", "shuffle"):
            if loader_kwargs.get(key) not in (None, False):
                raise ValueError(f"StatefulLoader does not take {key}: the dataset's config batches (batch_size)")
            loader_kwargs.pop(key, None)
        if loader_kwargs.get("persistent_workers"):
            raise ValueError(
                "StatefulLoader does not take persistent_workers=True: workers must receive set_epoch "
                "and load_state_dict through a fresh copy of the dataset each epoch"
            )
        if num_workers > 0 and loader_kwargs.get("multiprocessing_context") is None:
            import multiprocessing

            if multiprocessing.get_start_method(allow_none=True) in (None, "fork"):
                loader_kwargs["multiprocessing_context"] = "spawn"
        self.dataset = dataset
        self.num_workers = num_workers
        self.keep_state = keep_state
        self.loader = DataLoader(
            dataset, batch_size=None, num_workers=num_workers, pin_memory=pin_memory, **loader_kwargs
        )
        self._workers: list[dict[str, Any] | None] = [None] * max(1, num_workers)

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` at the next iteration (drops the states of the previous one)."""
        if epoch != self.dataset.epoch:
            self._workers = [None] * max(1, self.num_workers)
        self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        iterator = iter(self.loader)  # workers now hold their copy of the dataset (and its state)
        if self.num_workers > 0:
            self.dataset._pending = None
        if self.num_workers == 0:  # the dataset runs here: its state_dict() is exact
            yield from iterator
            return
        for item in iterator:
            info = item[STATE_KEY] if self.keep_state else item.pop(STATE_KEY)
            self._workers[info["worker"]] = info["state"]
            yield item

    def state_dict(self) -> dict[str, Any]:
        """Resume point after the last item yielded (see the class docstring)."""
        if self.num_workers == 0:
            state = self.dataset.state_dict()
            if state is not None and _is_loader_state(state):
                return state  # loaded, not started yet
            ds = self.dataset
            self._workers = [None if state is None else _part_start_state(state, ds.rank, ds.world_size)]
        return {
            "format": _LOADER_STATE_FORMAT,
            "epoch": self.dataset.epoch,
            "rank": self.dataset.rank,
            "world_size": self.dataset.world_size,
            "num_workers": self.num_workers,
            "workers": copy.deepcopy(list(self._workers)),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume after ``state`` at the next iteration: a state of :meth:`state_dict` (same
        world_size and worker count: each worker continues its own part), one merged by
        :func:`merge_state_dicts` (any world_size and worker count), or a client state.

        Raises:
            ValueError: a per-rank state of a multi-rank run with another worker count (merge
                every rank's state first).
        """
        self.dataset.load_state_dict(state)
        n = max(1, self.num_workers)
        rank, world_size = self.dataset.rank, self.dataset.world_size
        if _is_loader_state(state):
            workers = list(state.get("workers") or [])
            if len(workers) == n and state.get("world_size") == world_size:
                self._workers = [None if w is None else copy.deepcopy(dict(w)) for w in workers]
                return
            self.dataset._state_for_part(0, n)  # raises for a multi-rank run
            state = merge_state_dicts([state])
        self._workers = [_part_start_state(state, rank * n + w, world_size * n) for w in range(n)]
