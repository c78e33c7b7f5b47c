"""Helpers of the batch / order / resume tests: running clients to the end, and a reference model
of the core's batcher (the order its batches must come in)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import datago


def batch_ids(
    cfg: dict[str, Any], n: int | None = None, state: dict[str, Any] | None = None
) -> tuple[list[list[str]], dict[str, Any]]:
    """The id lists of the batches of one epoch (the first n only, when given) and the state after
    them."""
    out: list[list[str]] = []
    client = datago.DatagoClient(cfg)
    try:
        if state is not None:
            client.load_state_dict(state)
        while n is None or len(out) < n:
            b = client.get_batch()
            if b is None:
                break
            out.append(b.ids)
        return out, client.state_dict()
    finally:
        client.close()


def sample_ids(
    cfg: dict[str, Any], n: int | None = None, state: dict[str, Any] | None = None
) -> tuple[list[str], dict[str, Any]]:
    """The ids of the per-sample stream of one epoch (the first n only) and the state after them."""
    out: list[str] = []
    client = datago.DatagoClient(cfg)
    try:
        if state is not None:
            client.load_state_dict(state)
        while n is None or len(out) < n:
            s = client.get_sample()
            if s is None:
                break
            out.append(s.id)
        return out, client.state_dict()
    finally:
        client.close()


def simulate(
    stream: Iterable[tuple[str, tuple[int, int]]], size: int, max_held: int, drop_last: bool
) -> tuple[list[list[str]], int]:
    """Reference batcher: (id, bucket) in stream order -> batches in delivery order, and the number
    of partial batches flushed because more than max_held samples were held."""
    open_: dict[tuple[int, int], list[str]] = {}
    first: dict[tuple[int, int], int] = {}
    held, fixed, flushed = 0, [], 0
    for t, (sid, bucket) in enumerate(stream):
        open_.setdefault(bucket, []).append(sid)
        first.setdefault(bucket, t)
        held += 1
        if len(open_[bucket]) == size:
            fixed.append(open_.pop(bucket))
            first.pop(bucket)
            held -= size
        elif held > max_held:
            oldest = min(open_, key=lambda b: first[b])
            held -= len(open_[oldest])
            fixed.append(open_.pop(oldest))
            first.pop(oldest)
            flushed += 1
    if not drop_last:
        fixed += [open_[b] for b in sorted(open_, key=lambda b: first[b])]
    return fixed, flushed
