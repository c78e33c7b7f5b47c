"""source_type "webdataset": tar shards of real photos, read locally and over HTTP (127.0.0.1).

The shards are built here from the real photographs (tests/data/photos): per sample a JPEG, a mask
(mode L PNG), an extra image of another size, JSON metadata, a class and a .npy latent. The HTTP
server (tests/wds_helpers.py) supports Range requests, keeps an access log and injects faults.
"""

from __future__ import annotations

import gc
import io
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from wds_helpers import (
    Fault,
    ShardServer,
    entry_offset,
    make_samples,
    replace_entry,
    truncate,
    write_shards,
)

import datago
from photos_util import loader_config

N_SHARDS, PER_SHARD = 4, 6
PATTERN = "shard-{000000..000003}.tar"


def wds_config(url: Any, **extra: Any) -> dict[str, Any]:
    """A webdataset config with 256-px buckets and fast HTTP retries."""
    return loader_config("webdataset", {"url": url}, **{"http_retry_backoff": 0.02, "http_max_retries": 3, **extra})


def snapshot(s: datago.Sample) -> dict[str, Any]:
    """Everything of a sample, copied out of the C memory."""
    return {
        "source": s.source,
        "attributes": s.attributes,
        "mode": s.image.mode,
        "image": np.array(s.image_array),
        "original": (s.original_width, s.original_height),
        "masks": {k: (m.mode, m.size, np.array(m)) for k, m in s.masks.items()},
        "additional": {k: (m.mode, m.size, np.array(m)) for k, m in s.additional_images.items()},
        "latents": dict(s.latents),
    }


def load(cfg: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[str], dict[str, Any]]:
    """Run a client to the end: ({id: snapshot}, ids in order, stats); checks no sample leaks."""
    base = datago.live_samples()
    out: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    with datago.DatagoClient(cfg) as client:
        for s in client:
            assert s.id not in out, f"{s.id} delivered twice"
            out[s.id] = snapshot(s)
            order.append(s.id)
        del s
        stats = client.stats()
    gc.collect()
    assert datago.live_samples() == base
    return out, order, stats


def drain_until_error(cfg: dict[str, Any], exc: type[Exception]) -> tuple[list[str], Exception]:
    """Read samples until get_sample raises exc; returns the ids read before, and the error."""
    base = datago.live_samples()
    ids: list[str] = []
    client = datago.DatagoClient(cfg)
    try:
        with pytest.raises(exc) as info:
            while (s := client.get_sample(timeout=20)) is not None:
                ids.append(s.id)
                del s
        t0 = time.monotonic()
        client.stop()
        assert time.monotonic() - t0 < 1.0
    finally:
        client.close()
    gc.collect()
    assert datago.live_samples() == base
    return ids, info.value


@pytest.fixture(scope="module")
def samples(photos: list[Path]) -> list[tuple[str, dict[str, bytes]]]:
    return make_samples(photos, N_SHARDS * PER_SHARD, seed=1)


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory: pytest.TempPathFactory, samples: list) -> Path:
    d = tmp_path_factory.mktemp("shards")
    write_shards(d, samples, PER_SHARD)
    return d


@pytest.fixture
def server(shard_dir: Path):
    with ShardServer(shard_dir) as srv:
        yield srv


def all_keys(samples: list) -> list[str]:
    return [k for k, _ in samples]


# -- content -----------------------------------------------------------------------------------


def test_local_and_http_give_identical_samples(shard_dir: Path, samples: list, server: ShardServer) -> None:
    local, _, lstats = load(wds_config(str(shard_dir / PATTERN)))
    remote, _, rstats = load(wds_config(server.url(PATTERN), source_config={"auth_token": "s3cret"}))
    assert sorted(local) == sorted(remote) == all_keys(samples)
    assert lstats["samples_skipped"] == rstats["samples_skipped"] == 0
    by_key = dict(samples)
    for key in local:
        a, b = local[key], remote[key]
        shard = f"shard-{all_keys(samples).index(key) // PER_SHARD:06d}.tar"
        assert a["source"] == str(shard_dir / shard)
        assert b["source"] == server.url(shard)
        assert a["attributes"] == b["attributes"]
        np.testing.assert_array_equal(a["image"], b["image"])
        for kind in ("masks", "additional"):
            assert a[kind].keys() == b[kind].keys()
            for name in a[kind]:
                assert a[kind][name][:2] == b[kind][name][:2]
                np.testing.assert_array_equal(a[kind][name][2], b[kind][name][2])
        # what the shard holds comes out, typed
        meta = json.loads(by_key[key]["json"])
        assert a["attributes"] == {**meta, "cls": int(by_key[key]["cls"])}
        assert a["original"] == tuple(meta["size"])
        assert a["mode"] == "RGB"
        h, w = a["image"].shape[:2]
        assert set(a["masks"]) == {"mask.png"} and set(a["additional"]) == {"png"}
        mode, size, mask = a["masks"]["mask.png"]
        assert mode == "L" and size == (w, h) and mask.shape == (h, w)
        assert set(np.unique(mask)) <= {0, 255}  # nearest neighbour: labels stay labels
        mode, size, extra = a["additional"]["png"]
        assert mode == "RGB" and size == (w, h)
        # the extra image is the mirrored photo: its flip matches the main image closely
        diff = np.abs(extra[:, ::-1].astype(int) - a["image"].astype(int)).mean()
        assert diff < 12, f"{key}: extra image differs from the mirrored image by {diff:.1f}"
        index = meta["index"]
        for lat in (a["latents"]["latent.npy"], b["latents"]["latent.npy"]):
            np.testing.assert_array_equal(lat, np.arange(8, dtype=np.float32).reshape(2, 4) * (index + 1))
    # every shard was fetched once, with the bearer token, over few connections
    log = server.requests()
    assert sorted(e.path for e in log) == [f"shard-{i:06d}.tar" for i in range(N_SHARDS)]
    assert {e.authorization for e in log} == {"Bearer s3cret"}


def test_list_of_urls_and_reference_type(shard_dir: Path, server: ShardServer) -> None:
    urls = [server.url("shard-000001.tar"), str(shard_dir / "shard-00000{2..3}.tar")]
    cfg = wds_config(urls, source_config={"concurrent_downloads": 1}, num_threads=1, max_connections=1)
    _, order, _ = load(cfg)
    assert order == [f"sample_{i:05d}" for i in range(6, 24)]
    # reference_image_type: the png becomes the main image, the jpg an additional image
    got, _, _ = load(wds_config(urls, source_config={"reference_image_type": "png"}))
    s = got["sample_00006"]
    assert set(s["additional"]) == {"jpg"}
    assert s["additional"]["jpg"][1] == s["image"].shape[1::-1]


# -- ranks -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_shards(tmp_path_factory: pytest.TempPathFactory, photos: list[Path]) -> Path:
    """8 shards of 4 small samples (fast), and 3 shards of the same samples under three-*."""
    d = tmp_path_factory.mktemp("rank_shards")
    small = make_samples(photos, 32, seed=2, short_side=(48, 80))
    write_shards(d, small, 4, prefix="eight")
    write_shards(d, small, 11, prefix="three")
    return d


def test_ranks_split_by_shard_over_http(small_shards: Path) -> None:
    everything = {f"sample_{i:05d}" for i in range(32)}
    with ShardServer(small_shards) as srv:
        for world in range(1, 9):
            seen: set[str] = set()
            for rank in range(world):
                token = f"w{world}r{rank}"
                cfg = wds_config(
                    srv.url("eight-{000000..000007}.tar"),
                    image_config={"crop_and_resize": False},
                    source_config={"auth_token": token, "rank": rank, "world_size": world},
                )
                got, _, _ = load(cfg)
                assert not seen & got.keys(), f"world {world}: ranks overlap"
                seen |= got.keys()
                # shard-level: this rank requested exactly its shards, i % world == rank
                paths = sorted(e.path for e in srv.requests() if e.authorization == f"Bearer {token}")
                assert paths == [f"eight-{i:06d}.tar" for i in range(8) if i % world == rank]
            assert seen == everything, f"world {world}: samples missing"
        # each shard was requested once per world size: by one rank only
        for i in range(8):
            assert len(srv.requests(f"eight-{i:06d}.tar")) == 8


@pytest.mark.parametrize("top_level", [False, True])
def test_ranks_split_by_sample_when_fewer_shards(small_shards: Path, top_level: bool) -> None:
    everything = {f"sample_{i:05d}" for i in range(32)}
    for world in range(1, 9):
        seen: set[str] = set()
        for rank in range(world):
            cfg = wds_config(
                str(small_shards / "three-{000000..000002}.tar"),
                image_config={"crop_and_resize": False},
            )
            keys = {"rank": rank, "world_size": world}
            cfg.update(keys) if top_level else cfg["source_config"].update(keys)
            got, _, _ = load(cfg)
            assert not seen & got.keys()
            seen |= got.keys()
            if world > 3:  # sample-level: every rank gets a fair share
                assert 32 // world - 2 <= len(got) <= 32 // world + 3
        assert seen == everything


# -- faults ------------------------------------------------------------------------------------


def test_500_then_success_is_retried(server: ShardServer, samples: list) -> None:
    server.faults["shard-000001.tar"] = Fault(fail_times=2, fail_status=500)
    got, _, _ = load(wds_config(server.url(PATTERN)))
    assert sorted(got) == all_keys(samples)
    assert [e.status for e in server.requests("shard-000001.tar")] == [500, 500, 200]


def test_404_raises_with_the_url(server: ShardServer) -> None:
    urls = [server.url("shard-000000.tar"), server.url("missing-000001.tar")]
    ids, err = drain_until_error(wds_config(urls, source_config={"concurrent_downloads": 1}), OSError)
    assert isinstance(err, FileNotFoundError)
    assert server.url("missing-000001.tar") in str(err) and "404" in str(err)
    assert len(ids) == len(set(ids)) <= PER_SHARD
    assert len(server.requests("missing-000001.tar")) == 1  # a 404 is not retried


def test_403_raises_oserror(server: ShardServer) -> None:
    server.faults["shard-000002.tar"] = Fault(status=403)
    _, err = drain_until_error(wds_config(server.url(PATTERN)), OSError)
    assert not isinstance(err, FileNotFoundError)
    assert server.url("shard-000002.tar") in str(err) and "403" in str(err)


def test_connection_cut_mid_shard_is_resumed(server: ShardServer, shard_dir: Path, samples: list) -> None:
    size = (shard_dir / "shard-000002.tar").stat().st_size
    server.faults["shard-000002.tar"] = Fault(cut_after=size // 2)
    _, order, _ = load(wds_config(server.url(PATTERN)))
    assert sorted(order) == all_keys(samples)  # every sample, none twice
    log = server.requests("shard-000002.tar")
    assert [(e.range, e.status) for e in log] == [("", 200), (f"bytes={size // 2}-", 206)]


def test_cut_without_range_support_is_reported(server: ShardServer, shard_dir: Path) -> None:
    size = (shard_dir / "shard-000000.tar").stat().st_size
    server.faults["shard-000000.tar"] = Fault(cut_after=size // 2, no_range=True)
    url = server.url("shard-000000.tar")
    ids, err = drain_until_error(wds_config(url), OSError)
    assert url in str(err) and "cannot resume" in str(err)
    assert 0 < len(ids) < PER_SHARD and len(set(ids)) == len(ids)


@pytest.mark.parametrize("over_http", [False, True])
def test_truncated_tar_delivers_what_was_read(
    tmp_path: Path, samples: list, over_http: bool, caplog: pytest.LogCaptureFixture
) -> None:
    datago.initialize_logging("warn")
    caplog.set_level(logging.WARNING, logger="datago")
    paths = write_shards(tmp_path, samples[:12], PER_SHARD)
    cut = entry_offset(paths[0], "sample_00003.jpg") + 100  # inside the 4th sample's image
    truncate(paths[0], cut)
    with ShardServer(tmp_path) as srv:
        base = srv.url("shard-{000000..000001}.tar") if over_http else str(tmp_path / "shard-{000000..000001}.tar")
        got, _, _ = load(wds_config(base))
    assert sorted(got) == [f"sample_{i:05d}" for i in (0, 1, 2, *range(6, 12))]
    err = caplog.text  # the core's warnings reach the "datago" logger
    assert "truncated" in err and "shard-000000.tar" in err


def test_corrupt_image_in_a_shard_is_skipped_and_counted(tmp_path: Path, samples: list) -> None:
    paths = write_shards(tmp_path, samples[:12], PER_SHARD)
    replace_entry(paths[0], "sample_00002.jpg", b"\xff\xd8\xff\xe0 this is not a JPEG" * 10)
    replace_entry(paths[1], "sample_00007.mask.png", b"\x89PNG\r\n\x1a\n broken")
    with ShardServer(tmp_path) as srv:
        got, _, stats = load(wds_config(srv.url("shard-{000000..000001}.tar")))
    assert sorted(got) == [f"sample_{i:05d}" for i in range(12) if i not in (2, 7)]
    assert stats["skipped_reasons"] == {"decode_error": 2}


def test_sample_without_reference_image_is_skipped(
    tmp_path: Path, samples: list, caplog: pytest.LogCaptureFixture
) -> None:
    datago.initialize_logging("warn")
    caplog.set_level(logging.WARNING, logger="datago")
    paths = write_shards(tmp_path, samples[:6], PER_SHARD)
    from wds_helpers import tar_bytes

    # no entry of a reference type (jpg;jpeg;png;webp by default): its mask alone is not an image
    broken = [(k, {e: v for e, v in f.items() if not (k == "sample_00004" and e in ("jpg", "png"))})
              for k, f in samples[:6]]
    paths[0].write_bytes(tar_bytes(broken))
    got, _, _ = load(wds_config(str(paths[0])))
    assert sorted(got) == [f"sample_{i:05d}" for i in (0, 1, 2, 3, 5)]
    err = caplog.text  # the core's warnings reach the "datago" logger
    assert "missing_reference_image" in err and "sample_00004" in err


def test_http_retries_resumes_truncations_in_stats(server: ShardServer, shard_dir: Path, samples: list) -> None:
    size = (shard_dir / "shard-000002.tar").stat().st_size
    server.faults["shard-000001.tar"] = Fault(fail_times=2, fail_status=503)
    server.faults["shard-000002.tar"] = Fault(cut_after=size // 2)
    got, _, stats = load(wds_config(server.url(PATTERN)))
    assert sorted(got) == all_keys(samples)
    assert stats["http"] == {
        "requests": N_SHARDS + 2 + 1, "retries": 2, "resumes": 1, "truncations": 1, "timeouts": 0, "failures": 0
    }


def test_signed_urls_are_redacted_in_errors_and_logs(server: ShardServer, caplog: pytest.LogCaptureFixture) -> None:
    datago.initialize_logging("debug")
    caplog.set_level(logging.DEBUG, logger="datago")
    server.faults["shard-000000.tar"] = Fault(status=403)
    url = server.url("shard-000000.tar") + "?X-Amz-Credential=AKIAX&X-Amz-Signature=hush"
    _, err = drain_until_error(wds_config(url), OSError)
    assert server.url("shard-000000.tar") + "?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED" in str(err)
    assert "hush" not in str(err) and "AKIAX" not in str(err)
    assert "hush" not in caplog.text and "AKIAX" not in caplog.text and "shard-000000.tar" in caplog.text


def test_stalled_server_times_out(server: ShardServer) -> None:
    server.faults["shard-000000.tar"] = Fault(stall_after=4096)
    cfg = wds_config(server.url(PATTERN), http_read_timeout=0.5, http_max_retries=1)
    t0 = time.monotonic()
    _, err = drain_until_error(cfg, OSError)
    assert time.monotonic() - t0 < 6
    assert "stalled" in str(err) and server.url("shard-000000.tar") in str(err)


def test_stop_while_the_server_stalls_returns_promptly(server: ShardServer) -> None:
    for i in range(N_SHARDS):
        server.faults[f"shard-{i:06d}.tar"] = Fault(stall_after=2048)
    base = datago.live_samples()
    client = datago.DatagoClient(wds_config(server.url(PATTERN), http_read_timeout=60))
    try:
        with pytest.raises(TimeoutError):
            client.get_sample(timeout=0.5)
        t0 = time.monotonic()
        client.stop()
        assert time.monotonic() - t0 < 1.0
    finally:
        client.close()
    assert datago.live_samples() == base


# -- order -------------------------------------------------------------------------------------


def test_seeded_shuffle_is_reproducible(shard_dir: Path, samples: list) -> None:
    def order(**source_config: Any) -> list[str]:
        cfg = wds_config(
            str(shard_dir / PATTERN),
            source_config={"random_sampling": True, "shuffle_buffer_size": 8, **source_config},
            image_config={"crop_and_resize": False},
            num_threads=1,  # one worker per stage: the output order is the source's order
            max_connections=1,
        )
        return load(cfg)[1]

    a, b = order(seed=11), order(seed=11)
    assert a == b
    assert order(seed=12) != a
    assert order() != order()  # unseeded runs differ
    assert sorted(a) == all_keys(samples)
    assert a != all_keys(samples)


# -- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patch", "exc", "match"),
    [
        ({"source_config": {"shuffle": True}}, ValueError, "source_config.shuffle"),
        ({"url": "nowhere/shard-{0..3}.tar"}, FileNotFoundError, "nowhere/shard-0.tar"),
        ({"url": "shard-{3..1}.tar"}, ValueError, "empty range"),
        ({"url": ["http://"]}, ValueError, "no host"),
        ({"url": 7}, ValueError, "string or a list"),
        ({"http_read_timeout": -1}, ValueError, "http_read_timeout"),
        ({"http_min_throughput": -1}, ValueError, "http_min_throughput"),
        ({"source_config": {"world_size": 2, "rank": 2}}, ValueError, "rank"),
    ],
)
def test_bad_config(server: ShardServer, patch: dict, exc: type, match: str) -> None:
    patch = dict(patch)
    cfg = wds_config(patch.pop("url", server.url(PATTERN)))
    cfg["source_config"].update(patch.pop("source_config", {}))
    cfg.update(patch)
    with pytest.raises(exc, match=re.escape(match)):
        datago.DatagoClient(cfg)


# -- the reference image: the first present of jpg;jpeg;png;webp (issue 9) ---------------------


def test_reference_image_defaults_to_first_present_type(photos: list[Path], tmp_path: Path) -> None:
    """A mixed shard set (one sample in ten has only a PNG, one only a WebP): every sample gets its
    image by default; ``reference_image_type`` takes webdataset's ``"a;b"`` list; a single type
    keeps the old behaviour (the others are skipped as missing_reference_image)."""
    samples = make_samples(photos, 20, seed=9)
    mixed: list[tuple[str, dict[str, bytes]]] = []
    png_only, webp_only = set(), set()
    for i, (key, files) in enumerate(samples):
        files = dict(files)
        if i % 10 == 3:  # the png (a 3/4-size mirrored copy) is the only image
            del files["jpg"]
            png_only.add(key)
        elif i % 10 == 7:
            buf = io.BytesIO()
            Image.open(io.BytesIO(files.pop("jpg"))).save(buf, "WEBP", lossless=True)
            del files["png"]
            files["webp"] = buf.getvalue()
            webp_only.add(key)
        mixed.append((key, files))
    shards = write_shards(tmp_path / "mixed", mixed, per_shard=5)
    url = [str(p) for p in shards]
    expect = {key: files for key, files in mixed}

    def size_of(data: bytes) -> tuple[int, int]:
        return Image.open(io.BytesIO(data)).size

    got, _, stats = load(wds_config(url, image_config={"crop_and_resize": False}))
    assert sorted(got) == sorted(expect)  # nothing trains on nothing
    assert stats["samples_skipped"] == 0
    for key, s in got.items():
        files = expect[key]
        ref = "jpg" if "jpg" in files else "png" if "png" in files else "webp"
        assert s["original"] == size_of(files[ref]), key
        assert s["image"].shape[:2] == size_of(files[ref])[::-1]
        # the other image types stay additional images
        assert set(s["additional"]) == {e for e in ("png",) if e in files and e != ref}, key
    # webdataset's syntax: png before jpg
    got, _, stats = load(wds_config(url, source_config={"reference_image_type": "png;jpg"},
                                    image_config={"crop_and_resize": False}))
    assert sorted(got) == sorted(k for k, f in expect.items() if "png" in f or "jpg" in f)
    assert stats["skipped_reasons"] == {"missing_reference_image": len(webp_only)}
    for key, s in got.items():
        files = expect[key]
        assert s["original"] == size_of(files["png"] if "png" in files else files["jpg"])
        assert set(s["additional"]) == ({"jpg"} if "jpg" in files and "png" in files else set())
    # one type: the samples without it are skipped and counted
    got, _, stats = load(wds_config(url, source_config={"reference_image_type": "jpg"}))
    assert sorted(got) == sorted(set(expect) - png_only - webp_only)
    assert stats["skipped_reasons"] == {"missing_reference_image": len(png_only) + len(webp_only)}
