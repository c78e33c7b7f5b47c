"""Order you can reproduce and exact resume (issue 8): for the folder source, with and without
batches. Seeded runs deliver in an order that depends on (seed, epoch, rank, world_size) only;
state_dict / load_state_dict continue after the last sample or batch delivered; merged states resume
on another world_size (elastic)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from batch_util import batch_ids, sample_ids

import datago
from photos_util import file_config


def _cfg(root: Path, random: bool = True, **extra: Any) -> dict[str, Any]:
    extra.setdefault("num_threads", 2)
    return file_config(root, **{"source_config": {"random_sampling": random}, **extra})


def _flat(batches: list[list[str]]) -> list[str]:
    return [i for b in batches for i in b]


@pytest.mark.parametrize("random", [True, False])
def test_seeded_order_does_not_depend_on_threads(small_photo_dir: Path, random: bool) -> None:
    a, _ = sample_ids(_cfg(small_photo_dir, random, seed=5, num_threads=1, max_connections=1))
    b, _ = sample_ids(_cfg(small_photo_dir, random, seed=5, num_threads=4, max_connections=7))
    assert a == b and len(a) == 120
    ba, _ = batch_ids(_cfg(small_photo_dir, random, seed=5, batch_size=4, num_threads=1))
    bb, _ = batch_ids(_cfg(small_photo_dir, random, seed=5, batch_size=4, num_threads=4, prefetch_buffer_size=3))
    assert ba == bb and sorted(_flat(ba)) == sorted(a)


def test_seed_and_epoch_change_the_order_not_the_set(small_photo_dir: Path) -> None:
    a, _ = sample_ids(_cfg(small_photo_dir, seed=5))
    b, _ = sample_ids(_cfg(small_photo_dir, seed=6))
    c, _ = sample_ids(_cfg(small_photo_dir, seed=5, epoch=1))
    assert a != b and a != c and b != c
    assert sorted(a) == sorted(b) == sorted(c)
    # a start after the end of an epoch is the next epoch; set_epoch chooses it
    client = datago.DatagoClient(_cfg(small_photo_dir, seed=5))
    try:
        first = [s.id for s in client]
        client.stop()
        second = [s.id for s in client]
        client.stop()
        client.set_epoch(1)
        again = [s.id for s in client]
    finally:
        client.close()
    assert first == a and second == c and again == c
    # the top-level seed and source_config.seed are the same thing
    d, _ = sample_ids(file_config(small_photo_dir, source_config={"random_sampling": True, "seed": 5}))
    assert d == a


@pytest.mark.parametrize("k", [0, 1, 37, 119, 120])
def test_per_sample_resume_continues_the_sequence(small_photo_dir: Path, k: int) -> None:
    cfg = _cfg(small_photo_dir, seed=3)
    full, end_state = sample_ids(cfg)
    head, state = sample_ids(cfg, n=k)
    assert head == full[:k]
    assert state["consumed"] >= k and state["epoch"] == 0 and state["seed"] == 3
    tail, _ = sample_ids(cfg, state=state)
    assert head + tail == full
    assert end_state["consumed"] == 120 and end_state["pending"] == []


def test_batched_resume_inside_partial_buckets_and_at_the_epoch_end(small_photo_dir: Path) -> None:
    cfg = _cfg(small_photo_dir, seed=4, batch_size=6, max_held_samples=24)
    full, _ = batch_ids(cfg)
    with_pending = 0
    for k in [0, 1, 2, 5, 9, len(full) - 1, len(full)]:
        head, state = batch_ids(cfg, n=k)
        assert head == full[:k]
        with_pending += bool(state["pending"])
        # the state is small and JSON-able
        assert set(state) >= {"version", "source_type", "seed", "epoch", "world_size", "rank", "phases"}
        assert len(state["pending"]) <= 24
        tail, after = batch_ids(cfg, state=state)
        assert head + tail == full, k
        assert after["pending"] == [] and after["consumed"] == 120
    assert with_pending >= 3  # resumed inside partial buckets (samples held back come again)
    # a resume from a resume
    head, s1 = batch_ids(cfg, n=3)
    mid, s2 = batch_ids(cfg, n=4, state=s1)
    tail, _ = batch_ids(cfg, state=s2)
    assert head + mid + tail == full


def test_unseeded_resume_delivers_the_rest_exactly_once(small_photo_dir: Path) -> None:
    cfg = _cfg(small_photo_dir, batch_size=5, num_threads=3)  # fastest-first, shuffled with a drawn seed
    head, state = batch_ids(cfg, n=7)
    assert state["seed"] is not None  # the drawn seed, so that the resume reshuffles the same way
    tail, _ = batch_ids(cfg, state=state)
    ids = _flat(head) + _flat(tail)
    assert len(ids) == 120 and len(set(ids)) == 120
    heads, st = sample_ids(_cfg(small_photo_dir, num_threads=3), n=50)
    tails, _ = sample_ids(_cfg(small_photo_dir, num_threads=3), state=st)
    assert Counter(heads + tails) == Counter(p.name for p in small_photo_dir.iterdir())


def _ranks(cfg: dict[str, Any], ws: int, takes: list[int], batched: bool, state: dict[str, Any] | None = None):
    """Each rank delivers takes[r] items (None: to the end): (ids per rank, states)."""
    ids, states = [], []
    for r in range(ws):
        c = {**cfg, "rank": r, "world_size": ws}
        if batched:
            got, st = batch_ids(c, n=takes[r], state=state)
            ids.append(_flat(got))
        else:
            got2, st = sample_ids(c, n=takes[r], state=state)
            ids.append(got2)
        states.append(st)
    return ids, states


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize(("old", "new"), [(4, 3), (2, 5), (3, 1)])
def test_elastic_resume_delivers_the_rest_exactly_once(
    small_photo_dir: Path, batched: bool, old: int, new: int
) -> None:
    cfg = _cfg(small_photo_dir, seed=9, batch_size=4 if batched else 0)
    everything = sorted(p.name for p in small_photo_dir.iterdir())
    takes = [[3, 1, 0, 5, 2][r] for r in range(old)] if batched else [[17, 3, 0, 25, 9][r] for r in range(old)]
    first, states = _ranks(cfg, old, takes, batched)
    merged = datago.merge_state_dicts(states[::-1])
    assert merged["merged"] and len(merged["phases"]) == 1
    rest, _ = _ranks(cfg, new, [None] * new, batched, state=merged)
    delivered = [i for ids in first + rest for i in ids]
    assert sorted(delivered) == everything  # every sample once: none twice, none lost
    for ids in rest:
        assert ids  # the rest is spread over the new ranks


def test_elastic_twice_and_same_world_size_from_a_merged_state(small_photo_dir: Path) -> None:
    cfg = _cfg(small_photo_dir, seed=2, batch_size=3)
    everything = sorted(p.name for p in small_photo_dir.iterdir())
    full, _ = _ranks(cfg, 2, [None, None], True)
    # same world_size from a merged state: each rank continues its own sequence
    head, states = _ranks(cfg, 2, [4, 2], True)
    tail, _ = _ranks(cfg, 2, [None, None], True, state=datago.merge_state_dicts(states))
    assert [h + t for h, t in zip(head, tail, strict=True)] == full
    # 2 -> 3 -> 2: the second checkpoint appends a phase
    a, s1 = _ranks(cfg, 2, [5, 1], True)
    b, s2 = _ranks(cfg, 3, [2, 0, 4], True, state=datago.merge_state_dicts(s1))
    m2 = datago.merge_state_dicts(s2)
    assert len(m2["phases"]) == 2
    c, _ = _ranks(cfg, 2, [None, None], True, state=m2)
    assert sorted(i for ids in a + b + c for i in ids) == everything


def test_state_errors(small_photo_dir: Path) -> None:
    cfg = _cfg(small_photo_dir, seed=1, batch_size=4)
    _, st = batch_ids({**cfg, "rank": 0, "world_size": 2}, n=1)
    client = datago.DatagoClient({**cfg, "rank": 0, "world_size": 3})
    try:
        with pytest.raises(ValueError, match="merge_state_dicts"):
            client.load_state_dict(st)
        with pytest.raises(ValueError, match="seed"):
            client.load_state_dict({**st, "world_size": 3, "seed": 2})
        with pytest.raises(ValueError, match="source_type"):
            client.load_state_dict({**st, "source_type": "db"})
        with pytest.raises(ValueError, match="configured seed"):
            client.load_state_dict({**st, "world_size": 3, "ordered": False})
        client.start()
        with pytest.raises(ValueError, match="already started"):
            client.load_state_dict({**st, "world_size": 3})
    finally:
        client.close()
    with pytest.raises(ValueError, match="missing"):
        datago.merge_state_dicts([st])
    with pytest.raises(ValueError, match="twice"):
        datago.merge_state_dicts([st, st])
