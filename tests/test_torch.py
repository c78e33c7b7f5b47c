"""datago.torch: the IterableDataset, DataLoader workers (spawn; fork gives ForkError), rank defaults
from torch.distributed, and resuming through the dataset and the StatefulLoader — on real photos."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import socket
import subprocess
import sys
import textwrap
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing
from torch.utils.data import DataLoader

import datago
from datago.torch import STATE_KEY, DatagoIterableDataset, StatefulLoader, default_rank_world_size
from photos_util import file_config

ROOT = Path(__file__).resolve().parent.parent
SUBPROCESS_TIMEOUT_S = 240
# DataLoader(pin_memory=True) on a machine without an accelerator says so: expected here.
PIN_WARNING = "ignore:.*pin_memory.*:UserWarning"


def python_env() -> dict[str, str]:
    """The environment of a child Python that imports this checkout's datago."""
    path = os.pathsep.join(p for p in (str(ROOT / "python"), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def small_config(root: Path, **extra: Any) -> dict[str, Any]:
    """64-px buckets over a folder, one rank."""
    image_config = {"default_image_size": 64, **extra.pop("image_config", {})}
    return file_config(root, image_config=image_config, **extra)


def batch_config(root: Path, **extra: Any) -> dict[str, Any]:
    return small_config(root, batch_size=8, image_layout="CHW", **extra)


def all_ids(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def item_ids(item: dict[str, Any]) -> list[str]:
    return list(item["ids"]) if "ids" in item else [item["id"]]


def read(loader: Any, limit: int | None = None) -> list[dict[str, Any]]:
    out = []
    for item in loader:
        out.append(item)
        if limit is not None and len(out) == limit:
            break
    return out


def flat_ids(items: list[dict[str, Any]]) -> list[str]:
    return [i for item in items for i in item_ids(item)]


# -- tensors -----------------------------------------------------------------------------------
def test_import_datago_does_not_import_torch() -> None:
    code = "import sys, datago; assert 'torch' not in sys.modules, 'torch imported'"
    env = python_env()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=SUBPROCESS_TIMEOUT_S)


def test_to_torch_shares_memory(small_photo_dir: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with datago.DatagoClient(batch_config(small_photo_dir)) as client:
            batch = client.get_batch()
            assert batch is not None
            tensors = batch.to_torch()
            images = tensors["images"]
            array = batch.images
            assert images.dtype == torch.uint8 and tuple(images.shape) == array.shape
            assert images.shape[1] == 3 and len(batch) == images.shape[0] == len(tensors["ids"])
            assert images.data_ptr() == array.ctypes.data == array.__array_interface__["data"][0]
            assert images.data_ptr() == batch.data_ptr == c_buffer_address(batch)
            images[0, 0, 0, 0] = 7  # writable, and the array sees the write: one buffer
            assert array[0, 0, 0, 0] == 7
        ds = DatagoIterableDataset(batch_config(small_photo_dir), fields=())
        item = next(iter(DataLoader(ds, batch_size=None, num_workers=0)))
        assert set(item) == {"images"}
        assert item["images"].is_contiguous() and item["images"].shape[1] == 3


def c_buffer_address(batch: Any) -> int:
    """Address of the batch's C image buffer, read from the datago_batch struct through cffi."""
    from datago import _lib

    return int(_lib.ffi.cast("uintptr_t", batch._c.images))


def test_dataset_batches_share_memory_and_carry_fields(small_photo_dir: Path) -> None:
    ds = DatagoIterableDataset(
        batch_config(small_photo_dir), fields=("id", "source", "original_size", "bucket", "attributes")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        items = read(DataLoader(ds, batch_size=None, num_workers=0))
    assert sorted(flat_ids(items)) == sorted(all_ids(small_photo_dir))
    for item in items:
        images = item["images"]
        n = images.shape[0]
        assert images.dtype == torch.uint8 and images.ndim == 4 and images.shape[1] == 3
        assert 1 <= n <= 8
        w, h = item["bucket"]
        assert tuple(images.shape[2:]) == (h, w)
        assert item["original_sizes"].dtype == torch.int64 and tuple(item["original_sizes"].shape) == (n, 2)
        assert item["sources"] == ["filesystem"] * n and item["attributes"] == [{}] * n
        assert STATE_KEY not in item  # in this process, ds.state_dict() is the resume point
    state = ds.state_dict()
    assert state is not None and state["rank"] == 0 and state["world_size"] == 1
    json.dumps(state)  # JSON-able


@pytest.mark.filterwarnings(PIN_WARNING)
def test_dataset_samples_num_workers_0_pin_memory(small_photo_dir: Path) -> None:
    ds = DatagoIterableDataset(small_config(small_photo_dir), fields=("id", "original_size"))
    items = read(DataLoader(ds, batch_size=None, num_workers=0, pin_memory=True))
    assert sorted(flat_ids(items)) == sorted(all_ids(small_photo_dir))
    for item in items:
        image = item["image"]
        assert image.dtype == torch.uint8 and image.ndim == 3 and image.shape[2] in (1, 3, 4)
        assert image.is_contiguous()
        assert len(item["original_size"]) == 2


def test_sample_layout_chw(small_photo_dir: Path) -> None:
    cfg = small_config(small_photo_dir, image_config={"image_to_rgb8": True})
    hwc = read(DatagoIterableDataset(cfg))
    chw = read(DatagoIterableDataset({**cfg, "image_layout": "CHW"}))
    by_id = {item["id"]: item["image"] for item in hwc}
    for item in chw:
        assert item["image"].shape[0] == 3
        assert torch.equal(item["image"], by_id[item["id"]].permute(2, 0, 1))


def test_fields_are_checked(small_photo_dir: Path) -> None:
    with pytest.raises(ValueError, match="captions"):
        DatagoIterableDataset(small_config(small_photo_dir), fields=("id", "captions"))
    with pytest.raises(TypeError, match="config"):
        DatagoIterableDataset(42)


def test_dataset_pickles_after_use(small_photo_dir: Path) -> None:
    ds = DatagoIterableDataset(small_config(small_photo_dir, limit=4))
    assert len(read(ds)) == 4
    copy = pickle.loads(pickle.dumps(ds))  # the live client stays behind
    assert copy._client is None and copy.config == ds.config
    assert len(read(copy)) == 4


# -- parts: workers and ranks --------------------------------------------------------------------
def test_part_config_splits_ranks_workers_and_threads(small_photo_dir: Path) -> None:
    cfg = small_config(small_photo_dir, num_threads=6, source_config={"rank": 1, "world_size": 3})
    ds = DatagoIterableDataset(cfg)
    assert (ds.rank, ds.world_size) == (1, 3)  # the config's own keys
    part = ds.part_config(worker=1, num_workers=2)
    assert (part["rank"], part["world_size"], part["num_threads"]) == (3, 6, 3)
    assert "rank" not in part["source_config"] and "world_size" not in part["source_config"]
    assert ds.part_config(0, 1)["num_threads"] == 6
    assert DatagoIterableDataset(cfg, rank=2).rank == 2  # an argument wins


def test_rank_defaults_from_environment(small_photo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert default_rank_world_size() == (1, 3)
    ds = DatagoIterableDataset(small_config(small_photo_dir))
    assert (ds.rank, ds.world_size) == (1, 3)
    explicit = DatagoIterableDataset(small_config(small_photo_dir, rank=0, world_size=2))
    assert (explicit.rank, explicit.world_size) == (0, 2)
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="RANK"):
        default_rank_world_size()
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert default_rank_world_size() == (0, 1)


def test_ranks_are_disjoint_and_complete(small_photo_dir: Path) -> None:
    seen = [
        flat_ids(read(DatagoIterableDataset(batch_config(small_photo_dir), rank=r, world_size=3))) for r in range(3)
    ]
    assert sum(len(s) for s in seen) == len(all_ids(small_photo_dir))
    assert set().union(*map(set, seen)) == all_ids(small_photo_dir)


def test_spawn_workers_take_disjoint_complete_parts(small_photo_dir: Path) -> None:
    ds = DatagoIterableDataset(small_config(small_photo_dir))
    loader = DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="spawn")
    items = read(loader)
    per_worker: dict[int, list[str]] = {}
    for item in items:
        st = item[STATE_KEY]
        assert (st["num_workers"], st["parts"], st["part"]) == (2, 2, st["worker"])
        assert (st["state"]["rank"], st["state"]["world_size"]) == (st["part"], 2)
        per_worker.setdefault(st["worker"], []).extend(item_ids(item))
    assert set(per_worker) == {0, 1}
    assert not set(per_worker[0]) & set(per_worker[1])
    assert sorted(per_worker[0] + per_worker[1]) == sorted(all_ids(small_photo_dir))


FORK_SCRIPT = """
import sys
from torch.utils.data import DataLoader
import datago
from datago.torch import DatagoIterableDataset

ds = DatagoIterableDataset(CONFIG)
# the library not loaded here yet: forked workers create their own clients
ids = [item["id"] for item in DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="fork")]
assert len(ids) == len(set(ids)) == EXPECTED, ids
assert len(list(ds)) == EXPECTED  # the library is now loaded in this (parent) process
try:
    for _ in DataLoader(ds, batch_size=None, num_workers=1, multiprocessing_context="fork"):
        pass
except datago.ForkError as e:
    print("FORKERROR", str(e).replace("\\n", " "))
    sys.exit(0)
print("NO ERROR")
sys.exit(1)
"""


def test_fork_works_until_the_library_is_loaded_then_fork_error(small_photo_dir: Path) -> None:
    cfg = small_config(small_photo_dir)
    code = textwrap.dedent(FORK_SCRIPT).replace("CONFIG", repr(cfg))
    code = code.replace("EXPECTED", str(len(all_ids(small_photo_dir))))
    env = python_env()
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=SUBPROCESS_TIMEOUT_S
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    message = proc.stdout.split("FORKERROR", 1)[1]
    assert "DataLoader worker" in message and "fork" in message
    assert "num_workers=0" in message and "spawn" in message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_torch_distributed_defaults(small_photo_dir: Path, tmp_path: Path) -> None:
    import torch_workers

    cfg = small_config(small_photo_dir)
    torch.multiprocessing.spawn(
        torch_workers.distributed_rank,
        args=(2, free_port(), cfg, str(tmp_path)),
        nprocs=2,
        join=True,
    )
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [(r["rank"], r["world_size"]) for r in reports] == [(0, 2), (1, 2)]
    a, b = (set(r["ids"]) for r in reports)
    assert not a & b and a | b == all_ids(small_photo_dir)
    assert len(reports[0]["ids"]) + len(reports[1]["ids"]) == len(all_ids(small_photo_dir))


# -- epochs and resume ---------------------------------------------------------------------------
def test_set_epoch_changes_the_seeded_order(small_photo_dir: Path) -> None:
    ds = DatagoIterableDataset(batch_config(small_photo_dir, seed=3, source_config={"random_sampling": True}))
    epoch0 = flat_ids(read(ds))
    again = flat_ids(read(ds))
    ds.set_epoch(1)
    epoch1 = flat_ids(read(ds))
    assert epoch0 == again
    assert epoch0 != epoch1 and sorted(epoch0) == sorted(epoch1)


@pytest.mark.parametrize("mode", ["batches", "samples"])
def test_resume_through_the_dataset_is_the_uninterrupted_run(small_photo_dir: Path, mode: str) -> None:
    cfg = batch_config(small_photo_dir, seed=5) if mode == "batches" else small_config(small_photo_dir, seed=5)
    full = flat_ids(read(DatagoIterableDataset(cfg)))

    first = DatagoIterableDataset(cfg)
    head = read(DataLoader(first, batch_size=None, num_workers=0), limit=5)
    state = json.loads(json.dumps(first.state_dict()))  # a checkpoint: JSON round trip
    second = DatagoIterableDataset(cfg)
    second.load_state_dict(state)
    tail = read(DataLoader(second, batch_size=None, num_workers=0))
    assert flat_ids(head) + flat_ids(tail) == full  # seeded: the same sequence


def test_resume_unseeded_is_the_same_multiset(small_photo_dir: Path) -> None:
    cfg = batch_config(small_photo_dir)
    first = DatagoIterableDataset(cfg)
    head = read(first, limit=3)
    second = DatagoIterableDataset(cfg)
    second.load_state_dict(first.state_dict())
    tail = read(second)
    assert Counter(flat_ids(head) + flat_ids(tail)) == Counter(all_ids(small_photo_dir))


def test_stateful_loader_resume_with_forkserver_workers(small_photo_dir: Path) -> None:
    cfg = batch_config(small_photo_dir, seed=7)
    full = Counter(all_ids(small_photo_dir))
    # forkserver, whose server imports torch once (preload) instead of once per worker (spawn)
    multiprocessing.get_context("forkserver").set_forkserver_preload(["torch", "datago.torch"])
    kwargs: dict[str, Any] = {"num_workers": 2, "multiprocessing_context": "forkserver"}

    loader = StatefulLoader(DatagoIterableDataset(cfg), **kwargs)
    head = read(loader, limit=4)
    assert all(STATE_KEY not in item for item in head)
    state = json.loads(json.dumps(loader.state_dict()))
    assert state["num_workers"] == 2 and all(w is not None for w in state["workers"])

    resumed = StatefulLoader(DatagoIterableDataset(cfg), **kwargs)
    resumed.load_state_dict(state)
    tail = read(resumed)
    assert Counter(flat_ids(head) + flat_ids(tail)) == full
    # the state after the epoch: nothing left
    again = StatefulLoader(DatagoIterableDataset(cfg), **kwargs)
    again.load_state_dict(resumed.state_dict())
    assert read(again) == []

    # another worker count: after one item only worker 0 has delivered (worker 1 is at its start);
    # the state is merged and the new parts deliver what is left
    loader = StatefulLoader(DatagoIterableDataset(cfg), **kwargs)
    head = read(loader, limit=1)
    state = loader.state_dict()
    assert state["workers"][1] is None
    in_process = StatefulLoader(DatagoIterableDataset(cfg))
    in_process.load_state_dict(state)
    assert Counter(flat_ids(head) + flat_ids(read(in_process))) == full


def test_stateful_loader_in_process_sequence(small_photo_dir: Path) -> None:
    cfg = batch_config(small_photo_dir, seed=9)
    full = flat_ids(read(StatefulLoader(DatagoIterableDataset(cfg))))
    loader = StatefulLoader(DatagoIterableDataset(cfg))
    head = read(loader, limit=3)
    resumed = StatefulLoader(DatagoIterableDataset(cfg))
    resumed.load_state_dict(loader.state_dict())
    assert flat_ids(head) + flat_ids(read(resumed)) == full


def test_merged_rank_states_resume_on_another_world_size(small_photo_dir: Path) -> None:
    from datago.torch import merge_state_dicts

    cfg = batch_config(small_photo_dir, seed=11, source_config={"random_sampling": True})
    loaders = [StatefulLoader(DatagoIterableDataset(cfg, rank=r, world_size=2)) for r in range(2)]
    heads = [read(loader, limit=2 + r) for r, loader in enumerate(loaders)]
    states = [json.loads(json.dumps(loader.state_dict())) for loader in loaders]  # all_gather_object
    merged = merge_state_dicts(states)
    assert merged["merged"] is True
    tails = []
    for r in range(3):  # 2 ranks -> 3 ranks
        loader = StatefulLoader(DatagoIterableDataset(cfg, rank=r, world_size=3))
        loader.load_state_dict(merged)
        tails.append(flat_ids(read(loader)))
    delivered = [i for head in heads for i in flat_ids(head)] + [i for tail in tails for i in tail]
    assert Counter(delivered) == Counter(all_ids(small_photo_dir))


def test_stateful_loader_refuses_what_would_break_resume(small_photo_dir: Path) -> None:
    ds = DatagoIterableDataset(batch_config(small_photo_dir))
    if multiprocessing.get_start_method() == "fork":  # Python's default on Linux before 3.14
        context = StatefulLoader(ds, num_workers=2).loader.multiprocessing_context
        assert context is not None and context.get_start_method() == "spawn"
    with pytest.raises(ValueError, match="batch_size"):
        StatefulLoader(ds, batch_size=4)
    with pytest.raises(ValueError, match="persistent_workers"):
        StatefulLoader(ds, num_workers=1, persistent_workers=True)


# -- engine queries ------------------------------------------------------------------------------
def test_engine_query_through_the_dataset(small_photo_dir: Path, tmp_path: Path) -> None:
    from datago.engine import datasources
    from datago.engine.db import Engine

    engine = Engine(tmp_path / "engine.sqlite")
    try:
        src = datasources.get_or_create("small", small_photo_dir, db_url=engine, progress=False)
        names = sorted(all_ids(small_photo_dir))
        with src.metadata_context() as ctx:
            for i, name in enumerate(names):
                ctx.update_metadata(name, {"label": "png" if name.endswith(".png") else "jpg", "index": i})
        result = src[src["label"] == "png"].all()
        want = {str(d.datapoint_id): d.path for d in result}
        assert want and len(want) < len(names)
        ds = DatagoIterableDataset(
            result,
            {"image_config": {"crop_and_resize": True, "default_image_size": 64}, "batch_size": 4},
            fields=("id", "attributes", "source"),
        )
        items = read(DataLoader(ds, batch_size=None, num_workers=0))
        assert sorted(flat_ids(items)) == sorted(want)
        for item in items:
            assert all(a["label"] == "png" for a in item["attributes"])
            assert item["sources"] == ["small"] * len(item["ids"])
            assert item["images"].shape[-1] == 3  # HWC by default
        assert np.all(
            [
                a["index"] == names.index(want[i])
                for item in items
                for i, a in zip(item["ids"], item["attributes"], strict=True)
            ]
        )
    finally:
        engine.dispose()
