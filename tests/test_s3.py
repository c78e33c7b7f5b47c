"""s3:// through the Go core against a real S3 server on 127.0.0.1 (moto_server, see s3_util):
a bucket prefix as the file source's root_path and WebDataset shards in a bucket give the same
samples as the same files read locally; errors name the URL and the S3 error code."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from s3_util import S3Server, folder_files
from wds_helpers import make_samples, write_shards

import datago
from photos_util import file_config, loader_config


def load(cfg: dict[str, Any]) -> dict[str, tuple[str, np.ndarray, dict[str, Any]]]:
    """{id: (source, image array, attributes)} of a whole run; checks that no sample leaks."""
    base = datago.live_samples()
    out = {}
    with datago.DatagoClient(cfg) as client:
        for s in client:
            assert s.id not in out
            out[s.id] = (s.source, np.array(s.image_array), s.attributes)
        del s
    gc.collect()
    assert datago.live_samples() == base
    return out


@pytest.fixture(scope="module")
def photo_bucket(s3_server: S3Server, photo_dir: Path) -> str:
    """A bucket holding the real photos under ``photos/`` (two subfolders) and a stray file."""
    files = folder_files(photo_dir, "photos/")
    files["photos/README.txt"] = b"not an image"
    files["other/x.jpg"] = (photo_dir / next(iter(folder_files(photo_dir, "")))).read_bytes()
    return s3_server.new_bucket(files)


def test_file_source_from_a_bucket_matches_the_folder(s3_env: S3Server, photo_bucket: str, photo_dir: Path) -> None:
    root = f"s3://{photo_bucket}/photos"
    local = load(file_config(photo_dir))
    remote = load(file_config(root))
    assert sorted(remote) == sorted(local) and len(local) == 12
    for k in local:
        assert remote[k][0] == root + "/"
        np.testing.assert_array_equal(remote[k][1], local[k][1])
    # exact limit; the rank split and the seeded shuffle take the same files as the folder (the
    # delivery order of parallel fetches varies; go/source/s3_test.go compares the listings' order)
    with datago.DatagoClient(file_config(root, limit=5)) as c:
        assert len([s.id for s in c]) == 5
    for extra in ({"rank": 1, "world_size": 3}, {"source_config": {"random_sampling": True, "seed": 4}, "limit": 4}):
        with datago.DatagoClient(file_config(photo_dir, num_threads=1, max_connections=1, **extra)) as c:
            want = [s.id for s in c]
        with datago.DatagoClient(file_config(root, num_threads=1, max_connections=1, **extra)) as c:
            got = [s.id for s in c]
        assert sorted(got) == sorted(want), extra
    ranks = []
    for r in range(3):
        with datago.DatagoClient(file_config(root, rank=r, world_size=3)) as c:
            ranks.append({s.id for s in c})
    assert set().union(*ranks) == set(local) and sum(map(len, ranks)) == 12


def test_config_keys_override_the_environment(
    s3_server: S3Server, photo_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        monkeypatch.delenv(k, raising=False)
    s3 = {
        "endpoint_url": s3_server.endpoint,
        "region": "us-east-1",
        "access_key_id": s3_server.key,
        "secret_access_key": s3_server.secret,
        "addressing_style": "path",
        "list_page_size": 3,  # 13 objects below the prefix: 5 ListObjectsV2 pages
    }
    got = load(file_config(f"s3://{photo_bucket}/photos/", s3=s3))
    assert len(got) == 12


@pytest.fixture(scope="module")
def wds_samples(photos: list[Path]) -> list:
    return make_samples(photos, 12, seed=5)


def test_webdataset_shards_in_a_bucket_match_local(s3_env: S3Server, wds_samples: list, tmp_path: Path) -> None:
    paths = write_shards(tmp_path / "shards", wds_samples, 4)
    bucket = s3_env.new_bucket({f"train/{p.name}": p.read_bytes() for p in paths})
    local = load(loader_config("webdataset", {"url": [str(p) for p in paths]}))
    assert len(local) == 12
    for url in (
        f"s3://{bucket}/train/shard-{{000000..000002}}.tar",
        f"s3://{bucket}/train/",
        [f"s3://{bucket}/train/{p.name}" for p in paths],
    ):
        remote = load(loader_config("webdataset", {"url": url}))
        assert sorted(remote) == sorted(local)
        for k, (src, image, attrs) in local.items():
            assert remote[k][0] == f"s3://{bucket}/train/{Path(src).name}"
            np.testing.assert_array_equal(remote[k][1], image)
            assert remote[k][2] == attrs


def test_errors_name_the_url(s3_env: S3Server) -> None:
    with pytest.raises(FileNotFoundError, match=r"s3://no-such-bucket-datago/photos/.*NoSuchBucket") as e:
        datago.DatagoClient(file_config("s3://no-such-bucket-datago/photos"))
    assert isinstance(e.value, datago.NotFoundError)
    with pytest.raises(FileNotFoundError, match=r"s3://no-such-bucket-datago/shards/"):
        datago.DatagoClient(loader_config("webdataset", {"url": "s3://no-such-bucket-datago/shards/"}))
    for root, match in (
        ("hdfs://namenode/photos", "hdfs://namenode/photos.*s3://"),
        ("gs://bucket/photos", "storage.googleapis.com"),
    ):
        with pytest.raises(ValueError, match=match):
            datago.DatagoClient(file_config(root))
    bucket = s3_env.new_bucket({"train/a.tar": b"x"})
    with pytest.raises(FileNotFoundError, match=rf"s3://{bucket}/train/missing.tar.*NoSuchKey"):
        with datago.DatagoClient(loader_config("webdataset", {"url": f"s3://{bucket}/train/missing.tar"})) as c:
            list(c)


def test_wrong_keys_are_refused() -> None:
    """A server that checks SigV4 (moto with authentication on): a wrong secret and an unknown
    key are refused with PermissionError naming the URL and the S3 error code.

    (moto's signature check also refuses minio-go's ListObjectsV2 signed with the right keys, so
    the accepted case runs against MinIO: scripts/test_minio.sh runs this suite there.)"""
    srv = S3Server(auth=True)
    try:
        bucket = srv.new_bucket({"photos/a.jpg": b"x"})
        good = {
            "endpoint_url": srv.endpoint,
            "region": "us-east-1",
            "access_key_id": srv.key,
            "secret_access_key": srv.secret,
        }
        if srv.proc is None:  # an external server (MinIO): the right keys pass its signature check
            datago.DatagoClient(file_config(f"s3://{bucket}/photos", s3=good)).close()
        for key, secret, code in (
            (srv.key, "wrong", "SignatureDoesNotMatch"),
            ("AKIAWRONGKEY", "wrong", "InvalidAccessKeyId"),
        ):
            s3 = {**good, "access_key_id": key, "secret_access_key": secret}
            with pytest.raises(PermissionError, match=rf"s3://{bucket}/photos/.*403 {code}") as e:
                datago.DatagoClient(file_config(f"s3://{bucket}/photos", s3=s3))
            assert isinstance(e.value, datago.DatagoPermissionError) and isinstance(e.value, OSError)
        if srv.proc is not None:
            return  # moto answers unsigned requests with 500 while it checks signatures
        # no credentials (unsigned requests) on a private bucket: refused, and the message says so
        anon = {k: v for k, v in good.items() if k not in ("access_key_id", "secret_access_key")}
        with pytest.raises(PermissionError, match=rf"s3://{bucket}/photos/.*403.*credentials: anonymous"):
            datago.DatagoClient(file_config(f"s3://{bucket}/photos", s3={**anon, "anonymous": True}))
    finally:
        srv.stop()


def test_bucket_folder_resumes_like_a_folder(s3_env: S3Server, photo_bucket: str) -> None:
    """The s3:// root is the folder source with a bucket listing: seeded order and state_dict
    resume work as on a folder (interrupted + resumed = the whole epoch, none twice)."""
    cfg = file_config(f"s3://{photo_bucket}/photos", seed=3, source_config={"random_sampling": True})
    with datago.DatagoClient(cfg) as c:
        full = [s.id for s in c]
    with datago.DatagoClient(cfg) as c:
        first = [c.get_sample().id for _ in range(5)]
        state = c.state_dict()
    c = datago.DatagoClient(cfg)
    try:
        c.load_state_dict(state)
        rest = [s.id for s in c]
    finally:
        c.close()
    assert first + rest == full and len(full) == 12
