"""Ordered delivery, batches and resume for the WebDataset and db sources (the folder source is in
test_order_resume.py): seeded runs are independent of num_threads; a resumed run continues the
sequence; merged states resume on another world_size (elastic), every sample exactly once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from batch_util import batch_ids, sample_ids
from test_db_source import FakeDataroom, db_config, make_rows
from wds_helpers import make_samples, write_shards

import datago
from photos_util import loader_config


@pytest.fixture(scope="module")
def wds(tmp_path_factory: pytest.TempPathFactory, photos: list[Path]) -> tuple[str, list[str]]:
    """6 shards of 8 samples cut from the real photos (jpg, mask, extra png, json, latent)."""
    samples = make_samples(photos, 48, seed=5, short_side=(64, 128))
    d = tmp_path_factory.mktemp("wds")
    write_shards(d, samples, 8)
    return str(d / "shard-{000000..000005}.tar"), [k for k, _ in samples]


def _wds(url: str, **extra: Any) -> dict[str, Any]:
    sc = {"url": url, "random_sampling": True, "shuffle_buffer_size": 8, "concurrent_downloads": 3}
    return loader_config("webdataset", sc, **{"seed": 21, "num_threads": 2, **extra})


def test_webdataset_seeded_order_does_not_depend_on_threads(wds: tuple[str, list[str]]) -> None:
    url, keys = wds
    a, _ = sample_ids(_wds(url, num_threads=1))
    b, _ = sample_ids(_wds(url, num_threads=4, prefetch_buffer_size=2))
    assert a == b and sorted(a) == sorted(keys)
    ba, _ = batch_ids(_wds(url, num_threads=1, batch_size=5))
    bb, _ = batch_ids(_wds(url, num_threads=4, batch_size=5))
    assert ba == bb and sorted(i for x in ba for i in x) == sorted(keys)
    c, _ = sample_ids(_wds(url, seed=22))
    e, _ = sample_ids(_wds(url, epoch=1))
    assert c != a and e != a and sorted(c) == sorted(e) == sorted(keys)


def test_webdataset_batches_carry_masks_extra_images_and_latents(wds: tuple[str, list[str]]) -> None:
    url, keys = wds
    seen = []
    with datago.DatagoClient(_wds(url, batch_size=4, image_layout="CHW")) as client:
        for b in client:
            n, (w, h) = len(b), b.bucket
            assert b.images.shape == (n, 3, h, w)
            assert set(b.masks) and all(m.shape == (n, h, w) for m in b.masks.values())
            assert set(b.additional_images) and all(a.shape == b.images.shape for a in b.additional_images.values())
            for m in b.masks.values():
                assert set(np.unique(m)) <= {0, 255}  # nearest-neighbour: labels stay labels
            for i, lat in enumerate(b.latents):
                arr = lat["latent.npy"]
                assert arr.dtype == np.float32 and arr.shape == (2, 4)
                assert b.attributes[i]["index"] == int(arr[0, 1]) - 1  # arange(8) * (index + 1)
            seen += b.ids
    assert sorted(seen) == sorted(keys)


@pytest.mark.parametrize("batched", [False, True])
def test_webdataset_resume(wds: tuple[str, list[str]], batched: bool) -> None:
    url, _ = wds
    if batched:
        cfg = _wds(url, batch_size=4, max_held_samples=12)
        full, _ = batch_ids(cfg)
        with_pending = 0
        for k in (0, 2, 5, len(full)):  # ... inside partial buckets, and at the end of the epoch
            head, st = batch_ids(cfg, n=k)
            with_pending += bool(st["pending"])
            tail, _ = batch_ids(cfg, state=st)
            assert head + tail == full, k
        assert with_pending >= 1
    else:
        cfg = _wds(url)
        full2, _ = sample_ids(cfg)
        for k in (0, 1, 20, 48):
            head2, st = sample_ids(cfg, n=k)
            tail2, _ = sample_ids(cfg, state=st)
            assert head2 + tail2 == full2, k
    # two ranks (by shard): each rank resumes its own sequence
    for r in range(2):
        rc = {**_wds(url, batch_size=4), "rank": r, "world_size": 2}
        full3, _ = batch_ids(rc)
        head3, st = batch_ids(rc, n=2)
        tail3, _ = batch_ids(rc, state=st)
        assert head3 + tail3 == full3


def _elastic(cfg: dict[str, Any], old: int, takes: list[int], new: int, batched: bool) -> tuple[list, list]:
    """Ranks of world_size old deliver takes[r] batches (or samples) each, their states are merged,
    then new ranks deliver the rest: (ids of the first phase, ids of the second), per rank."""

    def run(ws: int, n: list[int | None], state: dict[str, Any] | None):
        ids, states = [], []
        for r in range(ws):
            c = {**cfg, "rank": r, "world_size": ws}
            if batched:
                got, st = batch_ids(c, n=n[r], state=state)
                ids.append([i for b in got for i in b])
            else:
                got2, st = sample_ids(c, n=n[r], state=state)
                ids.append(got2)
            states.append(st)
        return ids, states

    first, states = run(old, takes, None)
    rest, _ = run(new, [None] * new, datago.merge_state_dicts(states))
    return first, rest


@pytest.mark.parametrize(("old", "new"), [(2, 3), (3, 2), (2, 8)])
@pytest.mark.parametrize("batched", [False, True])
def test_webdataset_elastic_resume(wds: tuple[str, list[str]], old: int, new: int, batched: bool) -> None:
    url, keys = wds
    cfg = _wds(url, batch_size=3 if batched else 0)
    takes = [2, 1, 3] if batched else [11, 4, 7]
    first, rest = _elastic(cfg, old, takes[:old], new, batched)
    delivered = [i for x in first + rest for i in x]
    assert sorted(delivered) == sorted(keys)  # none twice, none lost
    assert sum(map(len, first)) > 0 and sum(map(len, rest)) > 0


def test_webdataset_elastic_twice_and_same_world_size(wds: tuple[str, list[str]]) -> None:
    url, keys = wds
    cfg = _wds(url, batch_size=2)

    def ranks(ws: int, n: list[int | None], state: dict[str, Any] | None = None):
        out = [batch_ids({**cfg, "rank": r, "world_size": ws}, n=n[r], state=state) for r in range(ws)]
        return [[i for b in got for i in b] for got, _ in out], [st for _, st in out]

    full, _ = ranks(2, [None, None])
    head, s1 = ranks(2, [3, 1])
    tail, _ = ranks(2, [None, None], datago.merge_state_dicts(s1))
    assert [h + t for h, t in zip(head, tail, strict=True)] == full  # same world_size: same sequences
    mid, s2 = ranks(3, [2, 0, 1], datago.merge_state_dicts(s1))  # 2 -> 3
    m2 = datago.merge_state_dicts(s2)
    assert len(m2["phases"]) == 2
    end, _ = ranks(2, [None, None], m2)  # 3 -> 2
    assert sorted(i for x in head + mid + end for i in x) == sorted(keys)


def test_webdataset_unseeded_concurrent_order_is_not_resumable(wds: tuple[str, list[str]]) -> None:
    url, _ = wds
    cfg = loader_config("webdataset", {"url": url, "concurrent_downloads": 3})
    _, st = sample_ids(cfg, n=3)
    client = datago.DatagoClient(cfg)
    try:
        with pytest.raises(ValueError, match="seed"):
            client.load_state_dict(st)
    finally:
        client.close()


@pytest.fixture(scope="module")
def room(photos: list[Path]):
    with FakeDataroom(*make_rows(photos)) as srv:
        yield srv


def _db(room: FakeDataroom, **extra: Any) -> dict[str, Any]:
    return db_config(room.api_url, **{"seed": 4, "num_threads": 2, "source_config": {"random_sampling": True}, **extra})


def test_db_seeded_order_does_not_depend_on_threads(room: FakeDataroom) -> None:
    a, _ = sample_ids(_db(room, num_threads=1, max_connections=1))
    b, _ = sample_ids(_db(room, num_threads=4, max_connections=8))
    assert a == b and len(a) == len(set(a)) > 10
    ba, _ = batch_ids(_db(room, num_threads=1, batch_size=3))
    bb, _ = batch_ids(_db(room, num_threads=4, max_connections=8, batch_size=3))
    assert ba == bb and sorted(i for x in ba for i in x) == sorted(a)
    c, _ = sample_ids(_db(room, seed=5))
    assert c != a and sorted(c) == sorted(a)


@pytest.mark.parametrize("random", [True, False])
def test_db_resume(room: FakeDataroom, random: bool) -> None:
    extra: dict[str, Any] = {"source_config": {"random_sampling": random}}
    if not random:
        extra["seed"] = None  # id order: reproducible without a seed
    cfg = _db(room, batch_size=3, **extra)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    full, _ = batch_ids(cfg)

    def same(a: list[list[str]], b: list[list[str]]) -> bool:
        # seeded: the same sequence; without a seed (fastest first): every sample exactly once
        flat_a, flat_b = [i for x in a for i in x], [i for x in b for i in x]
        return a == b if random else sorted(flat_a) == sorted(flat_b) and len(set(flat_a)) == len(flat_a)

    with_pending = 0
    for k in (0, 1, 3, len(full)):  # ... inside partial buckets, and at the end of the epoch
        head, st = batch_ids(cfg, n=k)
        with_pending += bool(st["pending"])
        tail, _ = batch_ids(cfg, state=st)
        assert same(head + tail, full), k
    assert with_pending >= 1
    pcfg = {**cfg, "batch_size": 0}
    fulls, _ = sample_ids(pcfg)
    head2, st2 = sample_ids(pcfg, n=7)
    tail2, _ = sample_ids(pcfg, state=st2)
    assert same([head2 + tail2], [fulls])


@pytest.mark.parametrize(("old", "new"), [(2, 3), (3, 2)])
@pytest.mark.parametrize("batched", [False, True])
def test_db_elastic_resume(room: FakeDataroom, old: int, new: int, batched: bool) -> None:
    cfg = _db(room, batch_size=2 if batched else 0)
    everything, _ = sample_ids({**cfg, "batch_size": 0})

    def run(ws: int, takes: list[int | None], state: dict[str, Any] | None = None):
        ids, states = [], []
        for r in range(ws):
            c = {**cfg, "rank": r, "world_size": ws}
            if batched:
                got, st = batch_ids(c, n=takes[r], state=state)
                ids.append([i for b in got for i in b])
            else:
                got2, st = sample_ids(c, n=takes[r], state=state)
                ids.append(got2)
            states.append(st)
        return ids, states

    full, _ = run(old, [None] * old)
    assert sorted(i for x in full for i in x) == sorted(everything)  # seeded ranks: disjoint, complete
    first, states = run(old, [2, 0, 1][:old])
    rest, _ = run(new, [None] * new, state=datago.merge_state_dicts(states))
    delivered = [i for x in first + rest for i in x]
    assert sorted(delivered) == sorted(everything)
    assert all(rest)
