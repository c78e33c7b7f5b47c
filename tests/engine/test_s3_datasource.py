"""An engine datasource on a bucket (s3://, a real S3 server on 127.0.0.1: moto_server, see
tests/s3_util.py), on SQLite and PostgreSQL: the scan lists the bucket and reads image headers
(ranged GETs of presigned URLs), metadata and queries work as on a folder, download_files and
read() fetch from the bucket, and as_ml_dataset loads the query's samples through the Go core
(straight from the bucket: the db source's image URLs are presigned)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from datago.engine import datasources, enable_s3_bucket_downloader, objstore
from datago.engine.db import Engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3_util import S3Server, folder_files

IMAGE_CONFIG = {"crop_and_resize": True, "default_image_size": 256, "downsampling_ratio": 16}


def test_bucket_datasource_end_to_end(
    engine: Engine, s3_env: S3Server, photo_root: Path, files_of: Callable, tmp_path: Path
) -> None:
    bucket = s3_env.new_bucket({**folder_files(photo_root, "data/"), "data/.hidden.jpg": b"x", "elsewhere/x.jpg": b"x"})
    local = datasources.get_or_create("local", photo_root, db_url=engine, progress=False)
    ds = datasources.get_or_create("photos", f"s3://{bucket}/data", db_url=engine, progress=False)
    assert ds.root == f"s3://{bucket}/data/"
    # the scan: the same files, sizes and image headers as the folder's
    want = {d.path: (d.size, d.width, d.height, d.format) for d in local.all()}
    got = {d.path: (d.size, d.width, d.height, d.format) for d in ds.all()}
    assert got == want and sorted(got) == sorted(files_of(photo_root))
    assert ds.scan(progress=False) == 0
    # metadata, query
    with ds.metadata_context() as ctx:
        ctx.update_metadata(["Aqua.jpg", "sub/Storm.jpg", "png/Aqua.png"], {"label": "water"})
        ctx.update_metadata("Dune.jpg", {"label": "desert"})
    res = ds[(ds["label"] == "water") & (ds["format"] == "JPEG")].all()
    assert sorted(res.paths) == ["Aqua.jpg", "sub/Storm.jpg"]
    # files from the bucket
    out = res.download_files(tmp_path / "dl", progress=False)
    for d in res:
        assert (out / d.path).read_bytes() == (photo_root / d.path).read_bytes() == d.read()
        assert d.local_path is None and d.url is not None and d.url.startswith(s3_env.endpoint)
    # load through the Go core
    with res.as_ml_dataset({"image_config": IMAGE_CONFIG}) as client:
        samples = {s.attributes.get("label"): np.array(s.image_array) for s in client}
    assert set(samples) == {"water"}
    with ds[ds["label"].is_not_null()].all().as_ml_dataset({"image_config": IMAGE_CONFIG}) as client:
        assert len(list(client)) == 4


def test_bucket_datasource_errors(engine: Engine, s3_env: S3Server) -> None:
    with pytest.raises(FileNotFoundError, match=r"s3://no-such-bucket-datago/x/.*NoSuchBucket"):
        datasources.get_or_create("missing", "s3://no-such-bucket-datago/x", db_url=engine, progress=False)
    for root in ("hdfs://namenode/photos", "gs://bucket/photos"):
        with pytest.raises(ValueError, match=r"unsupported datasource root.*s3://"):
            datasources.get_or_create("bad", root, db_url=engine, progress=False)


def test_switches_take_a_client(s3_env: S3Server, engine: Engine, photo_root: Path) -> None:
    """enable_s3_bucket_downloader(client) installs a boto3 client of one's own (here with wrong
    keys against a server that checks them: the refusal is a PermissionError naming the URL)."""
    srv = S3Server(auth=True)
    try:
        bucket = srv.new_bucket(folder_files(photo_root, ""))
        enable_s3_bucket_downloader(srv.client())
        # (moto answers presigned GETs with 500 while it checks signatures: list only)
        assert objstore.list_keys(objstore.normalize_root(f"s3://{bucket}")) == sorted(folder_files(photo_root, ""))
        enable_s3_bucket_downloader(srv.client(secret="wrong"))
        with pytest.raises(PermissionError, match=rf"s3://{bucket}/.*SignatureDoesNotMatch"):
            objstore.list_keys(f"s3://{bucket}/")
        enable_s3_bucket_downloader(srv.client(key="AKIAWRONGKEY"))
        with pytest.raises(PermissionError, match=rf"s3://{bucket}/.*InvalidAccessKeyId"):
            datasources.get_or_create("auth2", f"s3://{bucket}/", db_url=engine, progress=False)
    finally:
        objstore.reset_clients()
        srv.stop()
