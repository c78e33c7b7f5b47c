"""Process entry points for tests/test_torch.py (a module of its own, so that spawned processes can
import them by name without importing the test module)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def distributed_rank(rank: int, world_size: int, port: int, config: dict[str, Any], out_dir: str) -> None:
    """One rank of a gloo process group on 127.0.0.1: build the dataset without rank keys, read it
    through a DataLoader and write ``{"rank", "world_size", "ids"}`` to ``out_dir/rank<r>.json``."""
    import torch.distributed as dist
    from torch.utils.data import DataLoader

    from datago.torch import DatagoIterableDataset

    os.environ.pop("RANK", None)
    os.environ.pop("WORLD_SIZE", None)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        ds = DatagoIterableDataset(config)
        ids = [item["id"] for item in DataLoader(ds, batch_size=None, num_workers=0)]
        report = {"rank": ds.rank, "world_size": ds.world_size, "ids": ids}
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(report))
        dist.barrier()
    finally:
        dist.destroy_process_group()
