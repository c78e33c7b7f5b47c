"""Batches from the core (config key batch_size): one bucket per batch, one contiguous C buffer
written by the transform stage, shapes / layouts / modes, memory, and the partial-batch policy."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from batch_util import batch_ids, simulate
from PIL import Image

import datago
from photos_util import file_config


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory: pytest.TempPathFactory, photos: list[Path]) -> Path:
    """48 crops of the real photos in every mode a batch converts: RGB JPEG, grey JPEG, RGBA and LA
    PNG (alpha varying), RGB PNG; 96-200 px a side."""
    d = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(8)
    sources = [Image.open(p).convert("RGB") for p in photos]  # every photo is at least 240 px
    for i in range(48):
        src = sources[i % len(sources)]
        w, h = int(rng.integers(96, 200)), int(rng.integers(96, 200))
        x, y = int(rng.integers(0, src.width - w)), int(rng.integers(0, src.height - h))
        crop = src.crop((x, y, x + w, y + h))
        kind = i % 5
        if kind == 0:
            crop.save(d / f"{i:03d}.jpg", quality=92)
        elif kind == 1:
            crop.convert("L").save(d / f"{i:03d}.jpg", quality=92)
        elif kind == 2:
            rgba = crop.convert("RGBA")
            rgba.putalpha(Image.linear_gradient("L").resize(crop.size))
            rgba.save(d / f"{i:03d}.png")
        elif kind == 3:
            la = crop.convert("LA")
            la.putalpha(Image.linear_gradient("L").rotate(90).resize(crop.size))
            la.save(d / f"{i:03d}.png")
        else:
            crop.save(d / f"{i:03d}.png")
    return d


def _cfg(root: Path, **extra: Any) -> dict[str, Any]:
    return file_config(root, **{"num_threads": 2, "seed": 11, "source_config": {"random_sampling": True}, **extra})


def _per_sample(root: Path, **extra: Any) -> dict[str, np.ndarray]:
    """id -> (H, W, 3) pixels of the per-sample stream (image_to_rgb8, packed RGB)."""
    cfg = _cfg(root, image_config={"image_to_rgb8": True, "pil_zero_copy": False}, **extra)
    with datago.DatagoClient(cfg) as client:
        return {s.id: np.array(s.image_array) for s in client}


def test_batches_hold_one_bucket_and_the_per_sample_pixels(small_photo_dir: Path) -> None:
    want = _per_sample(small_photo_dir)
    seen: list[str] = []
    with datago.DatagoClient(_cfg(small_photo_dir, batch_size=8)) as client:
        for batch in client:
            w, h = batch.bucket
            assert isinstance(batch, datago.Batch)
            assert batch.images.dtype == np.uint8 and batch.images.shape == (len(batch), h, w, 3)
            assert batch.images.flags.c_contiguous and batch.images.flags.writeable
            assert len(batch.ids) == len(batch.sources) == len(batch.attributes) == len(batch.original_sizes)
            assert 1 <= len(batch) <= 8
            for i, sid in enumerate(batch.ids):
                # the sample's own bucket is the batch's, and the pixels are the per-sample ones
                assert want[sid].shape == (h, w, 3), sid
                np.testing.assert_array_equal(batch.images[i], want[sid])
                assert batch.sources[i] == "filesystem" and batch.attributes[i] == {}
            seen += batch.ids
        assert client.stats()["batches_produced"] > 0
    assert sorted(seen) == sorted(want)


def test_chw_is_the_transposed_hwc(small_photo_dir: Path) -> None:
    hwc = {}
    with datago.DatagoClient(_cfg(small_photo_dir, batch_size=6)) as client:
        for b in client:
            hwc[tuple(b.ids)] = np.array(b.images)
    n = 0
    with datago.DatagoClient(_cfg(small_photo_dir, batch_size=6, image_layout="CHW")) as client:
        for b in client:
            w, h = b.bucket
            assert b.layout == "CHW" and b.images.shape == (len(b), 3, h, w)
            np.testing.assert_array_equal(b.images, hwc[tuple(b.ids)].transpose(0, 3, 1, 2))
            n += 1
    assert n == len(hwc)


@pytest.mark.parametrize(("mode", "channels"), [("RGB", 3), ("L", 1), ("RGBA", 4)])
@pytest.mark.parametrize("layout", ["HWC", "CHW"])
def test_every_source_mode_becomes_the_batch_mode(mixed_dir: Path, mode: str, channels: int, layout: str) -> None:
    cfg = _cfg(mixed_dir, batch_size=4, batch_mode=mode, image_layout=layout)
    ids = []
    with datago.DatagoClient(cfg) as client:
        for b in client:
            w, h = b.bucket
            shape = (len(b), channels, h, w) if layout == "CHW" else (len(b), h, w, channels)
            assert b.images.shape == shape
            hwc = b.images if layout == "HWC" else b.images.transpose(0, 2, 3, 1)
            for i, sid in enumerate(b.ids):
                src = Image.open(mixed_dir / sid)
                img = hwc[i]
                if mode == "RGBA" and src.mode in ("RGB", "L"):
                    assert (img[..., 3] == 255).all()
                if mode == "RGBA" and src.mode in ("RGBA", "LA"):
                    assert img[..., 3].min() < 128  # the gradient's alpha is kept
                if mode != "L" and src.mode in ("L", "LA"):
                    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
                if mode == "RGB" and src.mode in ("RGBA", "LA"):
                    # flattened onto white: the transparent corner is light
                    assert img[0, 0].mean() > 200 or img[-1, -1].mean() > 200
            ids += b.ids
        assert client.stats()["samples_skipped"] == 0
    assert sorted(ids) == sorted(p.name for p in mixed_dir.iterdir())


def test_rgb_batch_of_grey_and_alpha_sources_matches_per_sample_rgb8(mixed_dir: Path) -> None:
    want = _per_sample(mixed_dir)
    with datago.DatagoClient(_cfg(mixed_dir, batch_size=5)) as client:
        for b in client:
            for i, sid in enumerate(b.ids):
                np.testing.assert_array_equal(b.images[i], want[sid])


def test_no_copy_and_memory_returns(small_photo_dir: Path) -> None:
    gc.collect()
    base = datago.live_samples()
    with datago.DatagoClient(_cfg(small_photo_dir, batch_size=8)) as client:
        batches = list(client)  # the whole epoch: nothing is queued any more
    total = sum(len(b) for b in batches)
    n, nbytes = datago.live_samples()
    assert n - base[0] == total == 120
    assert nbytes - base[1] >= sum(len(b) * b.bucket[0] * b.bucket[1] * 3 for b in batches)
    b = batches.pop(0)
    # numpy's data pointer is the C buffer of the batch: no copy
    assert b.images.ctypes.data == b.data_ptr
    assert b.images.__array_interface__["data"][0] == b.data_ptr
    b.images[0, 0, 0] = 7  # writable, owned by the batch
    assert b.images[0, 0, 0, 0] == 7
    view, size = b.images[1], len(b)
    del b
    gc.collect()
    assert datago.live_samples()[0] - base[0] == total  # a view keeps the batch alive
    del view
    gc.collect()
    assert datago.live_samples()[0] - base[0] == total - size
    del batches
    gc.collect()
    assert datago.live_samples() == base


@pytest.mark.parametrize("drop_last", [False, True])
def test_partial_batches_and_the_bound(small_photo_dir: Path, drop_last: bool) -> None:
    # the reference: the seeded per-sample stream gives the order in which samples reach the batcher
    cfg = _cfg(small_photo_dir)
    with datago.DatagoClient(cfg) as client:
        stream = [(s.id, s.image.size) for s in client]
    for size, max_held in [(8, 128), (4, 6), (5, 5)]:
        want, flushed = simulate(stream, size, max_held, drop_last)
        got, _ = batch_ids(
            _cfg(small_photo_dir, batch_size=size, max_held_samples=max_held, drop_last=drop_last, num_threads=3)
        )
        assert got == want, (size, max_held)
        with datago.DatagoClient(
            _cfg(small_photo_dir, batch_size=size, max_held_samples=max_held, drop_last=drop_last)
        ) as client:
            n = sum(len(b) for b in client)
            st = client.stats()
        assert st["partial_batches_flushed"] == flushed
        if drop_last:
            assert st["partial_batches_at_end"] == 0
            assert n == sum(len(b) for b in want)
        else:
            assert st["partial_batches_dropped"] == 0 and n == len(stream)
        if max_held < 128:
            assert flushed > 0  # the bound was hit and honoured


def test_batch_config_errors(small_photo_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"batch_size needs image_config\.crop_and_resize"):
        datago.DatagoClient(file_config(small_photo_dir, batch_size=4, image_config={"crop_and_resize": False}))
    with pytest.raises(ValueError, match="image_layout"):
        datago.DatagoClient(file_config(small_photo_dir, batch_size=4, image_layout="NHWC"))
    with pytest.raises(ValueError, match="batch_mode"):
        datago.DatagoClient(file_config(small_photo_dir, batch_size=4, batch_mode="CMYK"))
    with pytest.raises(ValueError, match="max_held_samples"):
        datago.DatagoClient(file_config(small_photo_dir, batch_size=4, max_held_samples=2))
    with pytest.raises(ValueError, match="get_batch"):
        with datago.DatagoClient(file_config(small_photo_dir, batch_size=4)) as client:
            client.get_sample()
    with pytest.raises(ValueError, match="batch_size"):
        with datago.DatagoClient(file_config(small_photo_dir)) as client:
            client.get_batch()


def test_limit_caps_the_samples_that_enter_batches(small_photo_dir: Path) -> None:
    for seed in (11, None):
        cfg = _cfg(small_photo_dir, batch_size=4, limit=10, seed=seed)
        if seed is None:
            del cfg["seed"]
        with datago.DatagoClient(cfg) as client:
            sizes = [len(b) for b in client]
        assert sum(sizes) == 10 and max(sizes) <= 4
