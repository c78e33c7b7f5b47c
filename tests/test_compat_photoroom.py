"""Drop-in for Photoroom's datago (issue 9): the README examples of both editions, as written
(minus repo and bucket names), on real photos — the db examples against our engine server — and
every alias and default the compatibility needs (each test fails without its alias/default).

Rust edition (``pip install datago``): ``DatagoClient(json)``, ``get_sample()``,
``get_sample_auto_convert()``, ``initialize_logging(log_level=...)`` → bool, ``RUST_LOG``, a config
without ``source_type`` (the db source), ``source_config.random_order``, the ``raw_types`` helpers
and ``DatagoIterDataset``. Go edition (gopy): ``from datago import datago``, ``GetClient``,
``GetClientFromJSON``, ``Start``/``GetSample``/``Stop`` and the ``polyglot`` buffer helpers.
"""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image
from test_client import buckets, nearest
from wds_helpers import ShardServer, make_samples, write_shards

import datago
from datago import DatagoClient, initialize_logging
from photos_util import PHOTO_DIR, PHOTO_NAMES

ROOT = Path(__file__).resolve().parent.parent


def photo_sizes() -> dict[str, tuple[int, int]]:
    return {n: Image.open(PHOTO_DIR / n).size for n in PHOTO_NAMES}


@pytest.fixture(scope="module")
def photo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real photos alone in a folder (tests/data/photos also holds LICENSE.md)."""
    root = tmp_path_factory.mktemp("photoroom_photos")
    for n in PHOTO_NAMES:
        (root / n).write_bytes((PHOTO_DIR / n).read_bytes())
    return root


@pytest.fixture(scope="module")
def engine_server(photo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """Our engine server (SQLite) over the real photos as datasource "photos": its API URL, a key,
    and the datapoints by id (str)."""
    import datago.engine as engine_pkg  # the [engine] extra is a test dependency: never skipped
    from datago.engine import datasources
    from datago.engine.db import Engine

    engine = Engine(tmp_path_factory.mktemp("engine") / "engine.sqlite")
    try:
        ds = datasources.get_or_create("photos", photo_root, db_url=engine, progress=False)
        with ds.metadata_context() as ctx:
            for i, n in enumerate(sorted(PHOTO_NAMES)):
                ctx.update_metadata(n, {"index": i, "caption": f"photo {n}"})
        points = {str(d.datapoint_id): d for d in ds.all()}
        assert len(points) == len(PHOTO_NAMES)
        base, key, stop = engine_pkg.serve_in_background(engine)
        try:
            yield SimpleNamespace(api_url=base + "/api/", key=key, points=points)
        finally:
            stop()
    finally:
        engine.dispose()


@pytest.fixture
def dataroom_env(engine_server: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """datago's environment variables pointing at the engine server."""
    monkeypatch.setenv("DATAROOM_API_URL", engine_server.api_url)
    monkeypatch.setenv("DATAROOM_API_KEY", engine_server.key)
    monkeypatch.setenv("DATAROOM_TEST_SOURCE", "photos")
    return engine_server


@pytest.fixture(autouse=True)
def _reset_log_level() -> Iterator[None]:
    yield
    initialize_logging("warn")


# -- Rust edition: the README's examples ---------------------------------------------------------


def test_readme_dataroom_example(dataroom_env: SimpleNamespace) -> None:
    """The "Dataroom" example: no source_type (datago means the db source), initialize_logging()
    without a level, samples read without start()."""
    assert initialize_logging() is True  # the README's call, before any client

    config = {
        "source_config": {
            "sources": os.environ.get("DATAROOM_TEST_SOURCE", ""),
            "page_size": 500,
            "rank": 0,
            "world_size": 1,
        },
        "limit": 200,
        "samples_buffer_size": 32,
    }

    client = DatagoClient(json.dumps(config))

    got = []
    for _ in range(10):
        sample = client.get_sample()
        got.append(sample)
    client.close()

    points = dataroom_env.points
    assert len({s.id for s in got}) == 10 and {s.id for s in got} <= set(points)
    for s in got:
        d = points[s.id]
        assert s.source == "photos"
        assert s.attributes == {k: d.metadata[k] for k in ("index", "caption")}
        assert isinstance(s.image, Image.Image) and s.image.mode == "RGB"
        assert s.image.size == (d.width, d.height) == (s.original_width, s.original_height)
        assert s.image.size == photo_sizes()[d.path]


def test_readme_local_files_example(photo_root: Path) -> None:
    # Can also set the log level directly instead of using RUST_LOG env var
    assert initialize_logging(log_level="warn") is True

    config = {
        "source_type": "file",
        "source_config": {
            "root_path": str(photo_root),
            "random_sampling": False,  # True if used directly for training
            "rank": 0,  # Optional, distributed workloads are possible
            "world_size": 1,
        },
        "limit": 200,
        "samples_buffer_size": 32,
    }

    client = DatagoClient(json.dumps(config))

    samples = []
    for _ in range(10):
        sample = client.get_sample()
        samples.append(sample)
    client.close()

    sizes = photo_sizes()
    assert len({s.id for s in samples}) == 10 and {s.id for s in samples} <= set(PHOTO_NAMES)
    for s in samples:
        assert s.source == "filesystem" and s.image.size == sizes[s.id]
        ref = np.asarray(Image.open(photo_root / s.id).convert("RGB"), dtype=np.int16)
        diff = np.abs(np.asarray(s.image, dtype=np.int16) - ref)
        assert diff.mean() < 2.0, s.id  # libjpeg-turbo vs Pillow's IDCT; PNGs are exact
        if s.id.endswith(".png"):
            assert diff.max() == 0


def test_readme_webdataset_example(photos: list[Path], tmp_path: Path) -> None:
    samples = make_samples(photos, 24, seed=3)
    write_shards(tmp_path, samples, per_shard=6, prefix="imagenet-train")
    with ShardServer(tmp_path) as srv:
        # Can also set the log level directly instead of using RUST_LOG env var
        initialize_logging(log_level="warn")

        # URL of the test bucket
        bucket = srv.base
        dataset = "/imagenet-train-{000000..000003}.tar"
        url = bucket + dataset

        client_config = {
            "source_type": "webdataset",
            "source_config": {
                "url": url,
                "random_sampling": False,
                "concurrent_downloads": 8,  # The number of TarballSamples which should be handled concurrently
                "rank": 0,
                "world_size": 1,
            },
            "prefetch_buffer_size": 128,
            "samples_buffer_size": 64,
            "limit": 1_000_000,  # Dummy example, max number of samples you would like to serve
        }

        client = DatagoClient(json.dumps(client_config))

        got = []
        for _ in range(10):
            sample = client.get_sample()
            got.append(sample)
        client.close()
    by_key = dict(samples)
    assert len({s.id for s in got}) == 10 and {s.id for s in got} <= set(by_key)
    for s in got:
        files = by_key[s.id]
        assert s.source.startswith(bucket + "/imagenet-train-")
        assert s.image.size == Image.open(io.BytesIO(files["jpg"])).size
        assert s.attributes["index"] == int(s.id.split("_")[1]) and s.attributes["cls"] == int(files["cls"])
        assert s.masks["mask.png"].mode == "L" and set(s.additional_images) == {"png"}
        np.testing.assert_array_equal(s.latents["latent.npy"], np.load(io.BytesIO(files["latent.npy"])))


def test_readme_process_images_example(photo_root: Path) -> None:
    config = {
        "source_type": "file",
        "source_config": {
            "root_path": str(photo_root),
            "random_sampling": False,  # True if used directly for training
        },
        # Optional pre-processing of the images, placing them in an aspect ratio bucket
        "image_config": {
            "crop_and_resize": True,  # False to turn it off, or just omit this part of the config
            "default_image_size": 1024,
            "downsampling_ratio": 32,
            "min_aspect_ratio": 0.5,
            "max_aspect_ratio": 2.0,
            "pre_encode_images": False,
        },
        "limit": 200,
        "samples_buffer_size": 32,
    }
    bs = buckets(1024, 32)
    with DatagoClient(json.dumps(config)) as client:
        got = {s.id: s.image.size for s in client}
    sizes = photo_sizes()
    assert sorted(got) == sorted(PHOTO_NAMES)
    for name, size in got.items():
        assert size == nearest(*sizes[name], bs), name


def test_dataset_wrapper_readme_snippet(dataroom_env: SimpleNamespace) -> None:
    """The README's snippet as written: an empty config is the db source of $DATAROOM_API_URL."""
    from datago.dataset import DatagoIterDataset

    client_config: dict[str, Any] = {}  # See below for examples
    datago_dataset = DatagoIterDataset(client_config, return_python_types=True)
    assert len(datago_dataset) == 1_000_000_000
    items = list(datago_dataset)
    assert sorted(d["id"] for d in items) == sorted(dataroom_env.points)
    sizes = photo_sizes()
    for d in items:
        assert isinstance(d["image"], Image.Image) and d["image"].size == sizes[dataroom_env.points[d["id"]].path]
        assert d["source"] == "photos" and type(d["attributes"]["index"]) is int


def test_dataset_wrapper_limit(photo_root: Path) -> None:
    """The README's ``DatagoIterDataset(client_config, return_python_types=True)``: len is the
    limit, iteration stops there (or at the end of the stream), items are native types."""
    from datago.dataset import DatagoIterDataset

    client_config = {"source_type": "file", "source_config": {"root_path": str(photo_root)}, "limit": 5}
    datago_dataset = DatagoIterDataset(client_config, return_python_types=True)
    assert len(datago_dataset) == 5
    items = list(datago_dataset)
    assert len(items) == 5 and all(isinstance(d, dict) and isinstance(d["image"], Image.Image) for d in items)
    assert list(datago_dataset) == []  # an iterator, exhausted
    # no limit: datago's 1e9, and the stream's end stops the iteration
    ds = datago.DatagoIterDataset(json.dumps({"source_type": "file", "source_config": {"root_path": str(photo_root)}}))
    assert len(ds) == 1_000_000_000
    assert sorted(d["id"] for d in ds) == sorted(PHOTO_NAMES)
    # raw samples
    raw = list(DatagoIterDataset({**client_config, "limit": 3}, return_python_types=False))
    assert len(raw) == 3 and all(isinstance(s, datago.Sample) for s in raw)
    del raw, items, ds, datago_dataset
    gc.collect()


# -- Rust edition: get_sample_auto_convert and raw_types ------------------------------------------


def test_get_sample_auto_convert_returns_native_types(photos: list[Path], tmp_path: Path) -> None:
    samples = make_samples(photos, 6, seed=5)
    shards = write_shards(tmp_path, samples, per_shard=6)
    cfg = {"source_type": "webdataset", "source_config": {"url": str(shards[0])}}
    by_key = dict(samples)
    with DatagoClient(cfg) as client:
        got = []
        while (d := client.get_sample_auto_convert()) is not None:
            got.append(d)
    assert sorted(d["id"] for d in got) == sorted(by_key)
    for d in got:
        assert set(d) == {"id", "source", "duplicate_state", "attributes", "tags", "coca_embedding", "latents",
                          "image", "masks", "additional_images"}
        files = by_key[d["id"]]
        assert type(d["id"]) is str and d["source"] == str(shards[0]) and d["duplicate_state"] == 0
        assert type(d["attributes"]) is dict and d["attributes"]["caption"] == json.loads(files["json"])["caption"]
        assert d["tags"] == [] and d["coca_embedding"] == []
        assert isinstance(d["image"], Image.Image) and d["image"].size == Image.open(io.BytesIO(files["jpg"])).size
        assert isinstance(d["masks"]["mask.png"], Image.Image) and d["masks"]["mask.png"].mode == "L"
        assert isinstance(d["additional_images"]["png"], Image.Image)
        np.testing.assert_array_equal(d["latents"]["latent.npy"], np.load(io.BytesIO(files["latent.npy"])))


def test_db_sample_auto_convert_lists(dataroom_env: SimpleNamespace) -> None:
    with DatagoClient({"source_config": {"sources": "photos"}, "limit": 3}) as client:
        d = client.get_sample_auto_convert()
    assert d is not None and d["id"] in dataroom_env.points
    assert type(d["tags"]) is list and type(d["coca_embedding"]) is list and type(d["duplicate_state"]) is int


def test_raw_types_helpers(photo_root: Path, photos: list[Path], tmp_path: Path) -> None:
    from datago.raw_types import ImagePayload, decode_image_payload, get_image_mode, raw_array_to_numpy

    cfg = {"source_type": "file", "source_config": {"root_path": str(photo_root)}, "limit": 2,
           "image_config": {"pre_encode_images": True, "encode_format": "png"}}
    with DatagoClient(cfg) as client:
        s = client.get_sample()
        assert s is not None
        im = decode_image_payload(s.image_bytes)
        assert im.format == "PNG" and im.size == photo_sizes()[s.id]
        assert get_image_mode(s.image_bytes) == "RGB" and get_image_mode(s.image) == "RGB"
        payload = ImagePayload.from_sample(s)
        assert payload is not None and payload.is_encoded and payload.channels == -1
        assert decode_image_payload(payload).size == im.size and get_image_mode(payload) == "RGB"
        np.testing.assert_array_equal(payload.to_numpy_array(), np.asarray(im))
    with DatagoClient({**cfg, "image_config": {}}) as client:
        s = client.get_sample()
        payload = ImagePayload.from_sample(s)
        assert not payload.is_encoded and payload.channels == 3
        np.testing.assert_array_equal(payload.to_numpy_array(), s.image_array)
        assert payload.to_pil_image().size == s.image.size and get_image_mode(payload) == "RGB"
    # .npy latents
    arr = np.arange(12, dtype=np.float16).reshape(3, 4)
    buf = io.BytesIO()
    np.save(buf, arr)
    np.testing.assert_array_equal(raw_array_to_numpy(buf.getvalue()), arr)
    np.testing.assert_array_equal(raw_array_to_numpy(SimpleNamespace(data=buf.getvalue())), arr)
    assert raw_array_to_numpy(arr) is arr
    assert raw_array_to_numpy(b"") is None and raw_array_to_numpy(b"not npy") is None
    with pytest.raises(TypeError):
        raw_array_to_numpy(3)
    assert datago.ImagePayload is ImagePayload


# -- Rust edition: the aliases ------------------------------------------------------------------


def test_random_order_is_random_sampling(photo_root: Path) -> None:
    cfg = {"source_type": "file", "source_config": {"root_path": str(photo_root), "random_order": True, "seed": 1}}
    with DatagoClient(cfg) as client:
        assert sorted(s.id for s in client) == sorted(PHOTO_NAMES)
    bad = {"source_type": "file", "source_config": {"root_path": str(photo_root), "random_order": True,
                                                     "random_sampling": False}}
    with pytest.raises(ValueError, match="random_order"):
        DatagoClient(bad)


def test_initialize_logging_spellings(monkeypatch: pytest.MonkeyPatch) -> None:
    log = logging.getLogger("datago")
    assert initialize_logging("error") is True and log.level == logging.ERROR
    assert initialize_logging(log_level="info") is True and log.level == logging.INFO
    assert initialize_logging(level="debug") is True and log.level == logging.DEBUG
    assert initialize_logging(log_level="WARN") is True and log.level == logging.WARNING
    assert initialize_logging(log_level="trace") is True and log.level == logging.DEBUG
    # None: the environment's level (DATAGO_LOG first, then RUST_LOG), else warn
    monkeypatch.delenv("DATAGO_LOG", raising=False)
    monkeypatch.setenv("RUST_LOG", "hyper=debug,info")
    assert initialize_logging(None) is True and log.level == logging.INFO
    monkeypatch.setenv("RUST_LOG", "error,datago=debug")
    assert initialize_logging() is True and log.level == logging.DEBUG
    monkeypatch.setenv("DATAGO_LOG", "error")
    assert initialize_logging(None) is True and log.level == logging.ERROR
    monkeypatch.delenv("DATAGO_LOG")
    monkeypatch.delenv("RUST_LOG")
    assert initialize_logging(None) is True and log.level == logging.WARNING
    with pytest.raises(ValueError, match="loud"):
        initialize_logging(log_level="loud")
    with pytest.raises(ValueError, match="disagree"):
        initialize_logging("info", level="error")


_LOG_SCRIPT = textwrap.dedent(
    """
    import json, logging, sys
    import datago
    records = []
    class H(logging.Handler):
        def emit(self, r):
            records.append(r.getMessage())
    log = logging.getLogger("datago")
    print(json.dumps({"python_level": log.level}))
    log.setLevel(logging.DEBUG)  # from here on only the core's level filters
    log.addHandler(H())
    cfg = {"source_type": "file", "source_config": {"root_path": sys.argv[1]}}
    with datago.DatagoClient(cfg) as c:
        ids = sorted(s.id for s in c)
    print(json.dumps({"ids": ids, "skip_warnings": sum("skipping" in m for m in records)}))
    """
)


@pytest.mark.parametrize(
    ("env", "python_level", "warned"),
    [
        ({}, logging.NOTSET, True),
        ({"RUST_LOG": "error"}, logging.ERROR, False),
        ({"RUST_LOG": "datago=error,info"}, logging.ERROR, False),
        ({"RUST_LOG": "INFO"}, logging.INFO, True),
        ({"RUST_LOG": "info", "DATAGO_LOG": "error"}, logging.ERROR, False),  # DATAGO_LOG first
    ],
)
def test_rust_log_sets_the_core_level(
    tmp_path: Path, env: dict[str, str], python_level: int, warned: bool
) -> None:
    """RUST_LOG (datago's variable) sets the level of the core, read when the library loads, and of
    the ``datago`` logger: a corrupt file's warning is emitted or not."""
    (tmp_path / "Aqua.jpg").write_bytes((PHOTO_DIR / "Aqua.jpg").read_bytes())
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    child = {k: v for k, v in os.environ.items() if k not in ("RUST_LOG", "DATAGO_LOG")}
    child.update(env, PYTHONPATH=str(ROOT / "python"))
    out = subprocess.run([sys.executable, "-c", _LOG_SCRIPT, str(tmp_path)], env=child, capture_output=True,
                         text=True, timeout=120, check=True).stdout.splitlines()
    first, second = json.loads(out[0]), json.loads(out[1])
    assert first["python_level"] == python_level
    assert second["ids"] == ["Aqua.jpg"]
    assert (second["skip_warnings"] > 0) == warned


# -- image_to_rgb8 holds for re-encoded images -----------------------------------------------------


def test_image_to_rgb8_holds_when_re_encoded(tmp_path: Path) -> None:
    """RGBA, LA and palette-with-transparency sources (real photos with an alpha ramp), re-encoded
    as PNG or JPEG, with and without crop_and_resize: the file is 3-channel RGB, alpha flattened
    onto white."""
    root = tmp_path / "alpha"
    root.mkdir()
    base = Image.open(PHOTO_DIR / "YellowFlower_portrait.png").convert("RGB")
    alpha = Image.linear_gradient("L").resize(base.size)
    rgba = base.copy()
    rgba.putalpha(alpha)
    rgba.save(root / "rgba.png")
    rgba.convert("LA").save(root / "la.png")
    base.convert("P", palette=Image.Palette.ADAPTIVE).save(root / "p.png", transparency=0)
    want = Image.alpha_composite(Image.new("RGBA", base.size, "white"), rgba).convert("RGB")
    for fmt in ("png", "jpeg"):
        for crop in (False, True):
            cfg = {"source_type": "file", "source_config": {"root_path": str(root)},
                   "image_config": {"pre_encode_images": True, "image_to_rgb8": True, "encode_format": fmt,
                                    "crop_and_resize": crop, "default_image_size": 256}}
            with DatagoClient(cfg) as client:
                got = {s.id: (Image.open(io.BytesIO(bytes(s.image_bytes))), s.image) for s in client}
            assert sorted(got) == ["la.png", "p.png", "rgba.png"]
            for name, (encoded, image) in got.items():
                assert encoded.format == fmt.upper() and encoded.mode == "RGB", (fmt, crop, name)
                assert image.mode == "RGB"
            if not crop:
                diff = np.abs(np.asarray(got["rgba.png"][0], dtype=np.int16) - np.asarray(want, dtype=np.int16))
                assert diff.mean() < (1.0 if fmt == "png" else 4.0)


# -- Go edition: from datago import datago ----------------------------------------------------------


def test_go_readme_get_client_example(dataroom_env: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    from datago import datago
    from datago.polyglot import go_array_to_pil_image

    # source, has/lacks attributes, has/lacks masks, has/lacks latents, metadata prefetch, sample prefetch,
    # concurrent download
    client = datago.GetClient(
        source="photos",
        require_images=True,
        has_attributes="",
        lacks_attributes="",
        has_masks="",
        lacks_masks="",
        has_latents="",
        lacks_latents="",
        crop_and_resize=True,
        prefetch_buffer_size=64,
        samples_buffer_size=64,
        downloads_concurrency=64,
    )

    # before Start(): a warning and an empty sample
    caplog.set_level(logging.WARNING, logger="datago")
    empty = client.GetSample()
    assert empty.ID == "" and empty.Image.Len == 0 and empty.Image.DataPtr == 0
    assert "Start()" in caplog.text

    client.Start()  # This can be done early for convenience, not mandatory

    got = []
    for _ in range(10):
        sample = client.GetSample()
        got.append(sample)
    client.Stop()

    points, bs = dataroom_env.points, buckets(512, 16)
    assert len({s.ID for s in got}) == 10 and {s.ID for s in got} <= set(points)
    for s in got:
        d = points[s.ID]
        assert s.Source == "photos" and s.Attributes["caption"] == f"photo {d.path}"
        assert (s.Image.OriginalWidth, s.Image.OriginalHeight) == (d.width, d.height)
        im = go_array_to_pil_image(s.Image)
        assert isinstance(im, Image.Image) and im.mode == "RGB"
        assert im.size == (s.Image.Width, s.Image.Height) == nearest(d.width, d.height, bs)
        assert s.Image.Channels == 3 and s.Image.BitDepth == 8 and s.Image.Len == im.width * im.height * 3
        assert isinstance(s.Tags, list) and isinstance(s.CocaEmbedding, list) and s.DuplicateState == 0


def test_go_readme_get_client_from_json_example(photo_root: Path) -> None:
    from datago import datago
    from datago.polyglot import go_array_to_pil_image, uint8_array_to_numpy

    root_path, crop_and_resize, concurrency = str(photo_root), True, 4
    client_config = {
        # two sources are supported at the moment, DB (API and stack to be shared) & local filesystem
        # in the case of the filesystem, datago will serve the jpg/png files, ID being filepath
        "source_type": datago.SourceTypeFileSystem,
        "source_config": {
            "page_size": 512,
            "root_path": root_path,
        },
        # this governs the image pre-processing, which will resize and crop to aspect ratio buckets
        # resizing is high quality by default
        "image_config": {
            "crop_and_resize": crop_and_resize,
            "default_image_size": 512,
            "downsampling_ratio": 16,
            "min_aspect_ratio": 0.5,
            "max_aspect_ratio": 2.0,
            "pre_encode_images": False,
        },
        # some performance options, best settings will depend on your machine
        "prefetch_buffer_size": 64,
        "samples_buffer_size": 128,
        "concurrency": concurrency,
    }
    config = client_config

    client = datago.GetClientFromJSON(json.dumps(config))
    client.Start()  # This can be done early for convenience, not mandatory

    got = []
    for _ in range(10):
        sample = client.GetSample()
        got.append(sample)

    sizes, bs = photo_sizes(), buckets(512, 16)
    assert len({s.ID for s in got}) == 10 and {s.ID for s in got} <= set(PHOTO_NAMES)
    for s in got:
        arr = uint8_array_to_numpy(s.Image)
        im = go_array_to_pil_image(s.Image)
        assert arr.shape == (im.height, im.width, 3) and arr.dtype == np.uint8
        assert im.size == nearest(*sizes[s.ID], bs)
        np.testing.assert_array_equal(np.asarray(im), arr)
        np.testing.assert_array_equal(arr, s.sample.image_array)  # the core's pixels, unchanged
    # the end of the stream: empty samples
    rest = [client.GetSample() for _ in range(len(PHOTO_NAMES) - 10 + 2)]
    assert [s.ID for s in rest[-2:]] == ["", ""] and all(s.ID for s in rest[:-2])
    client.Stop()


def test_go_polyglot_on_masks_latents_and_encoded(photos: list[Path], tmp_path: Path) -> None:
    from datago import datago
    from datago.go_types import go_array_to_numpy, go_array_to_pil_image, uint8_array_to_numpy

    samples = make_samples(photos, 4, seed=8)
    shard = write_shards(tmp_path, samples, per_shard=4)[0]
    by_key = dict(samples)
    cfg = {"source_type": "webdataset", "source_config": {"url": str(shard)}}
    client = datago.GetClientFromJSON(cfg)
    client.Start()
    while (s := client.GetSample()).ID:
        files = by_key[s.ID]
        latent = go_array_to_numpy(s.Latents["latent.npy"])
        np.testing.assert_array_equal(latent, np.load(io.BytesIO(files["latent.npy"])))
        mask = go_array_to_pil_image(s.Masks["mask.png"])
        assert mask.mode == "L" and mask.size == Image.open(io.BytesIO(files["mask.png"])).size
        np.testing.assert_array_equal(np.asarray(mask), np.asarray(Image.open(io.BytesIO(files["mask.png"]))))
        assert go_array_to_pil_image(s.AdditionalImages["png"]).mode == "RGB"
    client.Stop()
    # pre-encoded: Channels -1, the file's bytes, returned undecoded (as datago does)
    client = datago.GetClientFromJSON(json.dumps({**cfg, "image_config": {"pre_encode_images": True}}))
    client.Start()
    s = client.GetSample()
    assert s.Image.Channels == -1
    raw = go_array_to_pil_image(s.Image)
    assert isinstance(raw, np.ndarray) and raw.ndim == 1
    assert uint8_array_to_numpy(s.Image).tobytes() == bytes(s.sample.image_bytes)
    assert Image.open(io.BytesIO(raw.tobytes())).size == Image.open(io.BytesIO(by_key[s.ID]["jpg"])).size
    client.Stop()
    assert go_array_to_numpy(datago.LatentPayload(b"")) is None
    assert go_array_to_pil_image(datago.ImagePayload()) is None


def test_go_get_client_filters_reach_the_server(dataroom_env: SimpleNamespace) -> None:
    """GetClient's presence filters are the db source's: no photo has a "missing" attribute."""
    from datago import datago

    client = datago.GetClient(source="photos", has_attributes="missing", limit=5)
    client.Start()
    assert client.GetSample().ID == ""
    client.Stop()
    client = datago.GetClient(source="photos", has_attributes="caption", limit=5)
    client.Start()
    ids = []
    while (s := client.GetSample()).ID:
        ids.append(s.ID)
    client.Stop()
    assert len(ids) == 5 and set(ids) <= set(dataroom_env.points)
