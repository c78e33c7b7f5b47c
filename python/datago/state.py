"""Resume states: merging the per-rank ``state_dict()`` of one run into one global state."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

_COMMON = ("version", "source_type", "seed", "ordered", "epoch", "world_size")


def merge_state_dicts(states: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge the states of every rank of one run (e.g. after ``all_gather_object``).

    Args:
        states: one ``DatagoClient.state_dict()`` per rank, all ranks 0..world_size-1 (any order).

    Returns:
        A global state (``"merged": True``): loaded by a client of the same world_size it
        continues each rank exactly (same sequence); loaded by a client of another world_size
        (file source) it delivers every sample of the epoch that no rank had delivered, exactly
        once across the new ranks.

    Raises:
        ValueError: the states are not one complete set of ranks of the same run.
    """
    if not states:
        raise ValueError("merge_state_dicts: no state given")
    first = states[0]
    for key in (*_COMMON, "phases"):
        if key not in first:
            raise ValueError(f"merge_state_dicts: state has no key {key!r}")
    if first.get("merged"):
        if len(states) == 1:
            return copy.deepcopy(dict(first))
        raise ValueError("merge_state_dicts: a merged state cannot be merged again with others")
    ws = int(first["world_size"])
    by_rank: dict[int, Mapping[str, Any]] = {}
    for st in states:
        for key in _COMMON:
            if st.get(key) != first.get(key):
                raise ValueError(f"merge_state_dicts: states differ in {key!r} ({st.get(key)!r} vs {first.get(key)!r})")
        if st.get("phases") != first.get("phases"):
            raise ValueError("merge_state_dicts: states differ in their phase history")
        if st.get("merged"):
            raise ValueError("merge_state_dicts: a merged state cannot be merged again with others")
        rank = st.get("rank")
        if not isinstance(rank, int) or not 0 <= rank < ws:
            raise ValueError(f"merge_state_dicts: rank {rank!r} is not in [0, {ws})")
        if rank in by_rank:
            raise ValueError(f"merge_state_dicts: rank {rank} given twice")
        by_rank[rank] = st
    missing = [r for r in range(ws) if r not in by_rank]
    if missing:
        raise ValueError(f"merge_state_dicts: ranks {missing} of world_size {ws} are missing")
    phase = {
        "world_size": ws,
        "ranks": [
            {"consumed": int(by_rank[r]["consumed"]), "pending": [int(s) for s in by_rank[r]["pending"]]}
            for r in range(ws)
        ],
    }
    out = {key: copy.deepcopy(first[key]) for key in _COMMON}
    shards = _union_shards([st.get("shards") or {} for st in by_rank.values()])
    if shards:
        # WebDataset: the samples delivered per shard (all ranks), and those of the phase's start
        out["shards"] = shards
        out["phase_shards"] = copy.deepcopy(first.get("phase_shards") or {})
    out.update(
        {
            "rank": None,
            "batch_size": first.get("batch_size", 0),
            "merged": True,
            "phases": [*copy.deepcopy(list(first["phases"])), phase],
            "consumed": 0,
            "pending": [],
        }
    )
    return out


def _union_shards(per_rank: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Union of per-shard sample sets ({shard: {"prefix": p, "extra": [...]}}: every index below p
    and the extra ones)."""
    sets: dict[str, set[int]] = {}
    prefixes: dict[str, int] = {}
    for shards in per_rank:
        for key, st in shards.items():
            prefixes[key] = max(prefixes.get(key, 0), int(st["prefix"]))
            sets.setdefault(key, set()).update(int(x) for x in st["extra"])
    out: dict[str, dict[str, Any]] = {}
    for key in sorted(sets, key=int):
        prefix, extra = prefixes[key], sets[key]
        while prefix in extra:
            extra.discard(prefix)
            prefix += 1
        out[key] = {"prefix": prefix, "extra": sorted(x for x in extra if x >= prefix)}
    return out
