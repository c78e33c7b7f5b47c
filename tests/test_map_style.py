"""Map-style access through the Go core: datago_client_get_items / DatagoClient.get_items /
datago.MapDataset, and torch samplers over it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from wds_helpers import make_samples, write_shards

import datago
from photos_util import file_config, loader_config


def _streamed(cfg: dict) -> dict[str, np.ndarray]:
    with datago.DatagoClient(cfg) as client:
        return {s.id: np.array(s.image_array) for s in client}


def test_get_items_decodes_exactly_the_indices_asked_identical_to_the_stream(photo_dir: Path) -> None:
    cfg = file_config(photo_dir, num_threads=3)
    streamed = _streamed(cfg)
    client = datago.DatagoClient(cfg)  # not started: nothing streams, so live samples are ours
    try:
        index = client.index()
        ids = [e["id"] for e in index]
        assert ids == sorted(streamed)  # the index is the sorted listing
        assert client.num_items() == len(ids) == 12
        assert all(e["source"] == "filesystem" and e["attributes"] == {} for e in index)
        asked = [7, 0, 11, 7, 3]  # any order, repeats allowed
        before = datago.live_samples()[0]
        samples = client.get_items(asked)
        assert datago.live_samples()[0] == before + len(asked)  # exactly these were decoded
        assert [s.id for s in samples] == [ids[i] for i in asked]
        for s in samples:
            np.testing.assert_array_equal(s.image_array, streamed[s.id])
        everything = client.get_items(range(len(ids)))
        assert {s.id for s in everything} == set(streamed)
        with pytest.raises(IndexError, match="out of range"):
            client.get_items([0, 12])
        with pytest.raises(IndexError):
            client.get_items([-1])
        assert client.get_items([]) == []
    finally:
        client.close()


def test_get_items_with_a_seeded_random_client_still_indexes_the_sorted_listing(photo_dir: Path) -> None:
    cfg = file_config(photo_dir, source_config={"random_sampling": True, "seed": 3}, rank=1, world_size=2)
    with datago.DatagoClient(cfg) as client:
        ids = [e["id"] for e in client.index()]
        assert len(ids) == 12 and ids == sorted(ids)  # all ranks' samples: a sampler shares them
        # streaming and map-style access at the same time
        first = client.get_sample()
        assert first is not None
        (s,) = client.get_items([5])
        assert s.id == ids[5]


def test_a_broken_file_is_none_counted_and_logged(
    photo_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "mixed"
    shutil.copytree(photo_dir, root)
    (root / "a" / "zz_broken.jpg").write_bytes(b"not a jpeg")
    client = datago.DatagoClient(file_config(root))  # not started: only get_items decodes
    try:
        ids = [e["id"] for e in client.index()]
        broken = ids.index("a/zz_broken.jpg")
        out = client.get_items([0, broken, 1])
        assert out[1] is None and out[0] is not None and out[2] is not None
        assert client.stats()["skipped_reasons"] == {"decode_error": 1}
    finally:
        client.close()
    assert any("zz_broken.jpg" in str(r.__dict__) for r in caplog.records)
    ds = datago.MapDataset(file_config(root))
    with pytest.raises(datago.SampleSkippedError, match=str(broken)):
        ds[broken]
    assert datago.MapDataset(file_config(root), on_skip="none")[broken] is None


def test_map_dataset(photo_dir: Path) -> None:
    import pickle

    ds = datago.MapDataset(file_config(photo_dir))
    assert len(ds) == 12
    ids = [e["id"] for e in ds.index()]
    assert ds[-1].id == ids[-1]
    assert [s.id for s in ds.__getitems__([2, 4])] == [ids[2], ids[4]]
    with pytest.raises(IndexError):
        ds[12]
    clone = pickle.loads(pickle.dumps(ds))  # a DataLoader worker's copy opens its own client
    assert clone[3].id == ids[3]
    ds.close()
    assert ds[0].id == ids[0]  # reopens


def test_webdataset_shards_are_indexable_too(photos: list[Path], tmp_path: Path) -> None:
    write_shards(tmp_path / "shards", make_samples(photos, 10, seed=1), per_shard=4)
    cfg = loader_config("webdataset", {"url": str(tmp_path / "shards" / "shard-{000000..000002}.tar")})
    streamed = _streamed(cfg)
    with datago.DatagoClient(cfg) as client:
        ids = [e["id"] for e in client.index()]
        assert sorted(ids) == sorted(streamed) and len(ids) == 10
        samples = client.get_items([9, 0, 4])
        assert [s.id for s in samples] == [ids[9], ids[0], ids[4]]
        for s in samples:
            np.testing.assert_array_equal(s.image_array, streamed[s.id])
            assert "mask.png" in s.mask_arrays and s.latents  # the whole sample, not only its image


def _square_config(root: Path) -> dict:
    # one square bucket: every image of a batch has the same shape (torch's default collate)
    return file_config(root, image_config={"default_image_size": 64, "min_aspect_ratio": 1.0, "max_aspect_ratio": 1.0})


def _train(loader, epochs: int) -> list[float]:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64 * 64, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(epochs):
        total = 0.0
        for images, targets in loader:
            assert images.shape[1:] == (3, 64, 64) and images.dtype == torch.uint8
            loss = torch.nn.functional.cross_entropy(model(images.float() / 255.0), targets)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        losses.append(total)
    return losses


def test_dataloader_with_random_sampler_trains(photo_dir: Path) -> None:
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from datago.datastack import DatagoDatasetIterator, TorchDataset

    iterator = DatagoDatasetIterator(_square_config(photo_dir))
    assert iterator.classes == ["a", "b"]
    ds = TorchDataset(iterator)
    loader = DataLoader(ds, batch_size=4, sampler=RandomSampler(ds, generator=torch.Generator().manual_seed(0)))
    losses = _train(loader, epochs=6)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_dataloader_with_distributed_sampler_covers_every_sample_once(photo_dir: Path) -> None:
    from torch.utils.data import DataLoader, DistributedSampler

    from datago.datastack import DatagoDatasetIterator, SplitterFactory, TorchDataset

    iterator = DatagoDatasetIterator(_square_config(photo_dir), sample_format="array")
    train, _ = SplitterFactory.get_random_splitter(ratios=[2, 1], seed=1).split(iterator)
    seen: list[int] = []
    for rank in range(2):
        sampler = DistributedSampler(TorchDataset(train), num_replicas=2, rank=rank, shuffle=True, seed=5)
        sampler.set_epoch(0)
        seen.extend(sampler)
        # rank 1 loads in a worker process, spawned: the parent loaded the Go runtime (len), which
        # does not survive fork
        workers = {"num_workers": 1, "multiprocessing_context": "spawn"} if rank == 1 else {}
        loader = DataLoader(TorchDataset(train), batch_size=3, sampler=sampler, **workers)
        losses = _train(loader, epochs=2)
        assert all(np.isfinite(losses))
    assert sorted(seen) == list(range(len(train)))  # 8 samples: disjoint and complete over ranks


def test_db_rows_are_indexable_with_their_attributes(photos: list[Path]) -> None:
    from test_db_source import FULL, FakeDataroom, db_config, make_rows

    rows, files = make_rows(photos)
    with FakeDataroom(rows, files) as room:
        cfg = db_config(room.api_url, source_config=FULL)
        streamed = _streamed(cfg)
        client = datago.DatagoClient(cfg)
        try:
            index = client.index()  # the rows' metadata: no image fetched yet
            assert sorted(e["id"] for e in index) == sorted(r["id"] for r in rows)
            by_id = {r["id"]: r for r in rows}
            assert all(e["attributes"] == by_id[e["id"]]["attributes"] for e in index)
            samples = client.get_items([len(index) - 1, 0])
            assert [s.id for s in samples] == [index[-1]["id"], index[0]["id"]]
            for s in samples:
                np.testing.assert_array_equal(s.image_array, streamed[s.id])
                assert s.tags == by_id[s.id]["tags"] and s.mask_arrays
        finally:
            client.close()
