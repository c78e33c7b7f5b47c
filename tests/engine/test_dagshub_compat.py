"""DagsHub Data Engine drop-in (issue 9), on SQLite and PostgreSQL with real photos: the README's
"Coming from DagsHub's Data Engine" examples run as written, and every alias and default they
rely on has a test of its own."""

from __future__ import annotations

import hashlib
import logging
import pickle
import re
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from datago.engine import datasources
from datago.engine.datasource import Datasource
from datago.engine.db import Engine, get_engine

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "### Coming from DagsHub's Data Engine"


def readme_blocks() -> list[str]:
    """The python code blocks of the README's DagsHub section, in order."""
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def make_source(engine: Engine, root: Path) -> Datasource:
    return datasources.get_or_create("photos", root, db_url=engine, progress=False)


def chw(path: Path) -> tuple[int, int, int]:
    """(3, height, width) of an RGB image file."""
    with Image.open(path) as im:
        return (3, im.height, im.width)


def pillow_chw(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(np.asarray(im.convert("RGB")).transpose(2, 0, 1))


@pytest.fixture
def default_engine(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """``engine``'s database as the default storage (``$DATAGO_ENGINE_DB``), as code written for
    DagsHub passes no storage argument; the shared engine for it is disposed at the end."""
    monkeypatch.setenv("DATAGO_ENGINE_DB", engine.url)
    monkeypatch.setenv("DATAGO_ENGINE_BLOBS", str(tmp_path / "default-blobs"))
    shared = get_engine()
    try:
        yield shared
    finally:
        shared.dispose()


# --- the README examples, as written ------------------------------------------------------------


def test_readme_examples_run_as_written(
    default_engine: Engine, photo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")
    blocks = readme_blocks()
    assert len(blocks) == 6
    make_source(default_engine, photo_root)
    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {}

    exec(blocks[0], ns)  # getting datasources
    ds = ns["ds"]
    assert isinstance(ds, Datasource) and ds.name == "photos" and ds.root == str(photo_root.resolve())
    assert [d.name for d in ns["ds_list"]] == ["photos"]

    exec(blocks[1], ns)  # metadata: a context, a dataframe, a path before the scan
    by_path = {d.path: d for d in ds.all()}
    assert by_path["Aqua.jpg"].metadata == {"episode": 5, "has_water": True}
    assert by_path["Dune.jpg"].metadata == by_path["Blinds.jpg"].metadata == {"episode": 7, "has_water": False}
    assert by_path["FreshFlower.jpg"].metadata == {"has_water": False}
    assert by_path["sub/Storm.jpg"].metadata == {"has_water": True}
    new = by_path["incoming/new.jpg"]
    assert new.metadata == {"pending": True} and new.size is None and new.width is None
    assert ds.fields == {"episode": "int", "has_water": "bool", "pending": "bool"}

    exec(blocks[2], ns)  # getting data and querying
    assert len(ns["head"]) == 10 and len(ns["all"]) == 10  # 9 files + the unscanned path
    df = ns["df"]
    assert list(df["path"]) == ["Aqua.jpg", "Blinds.jpg", "Dune.jpg"]  # episode > 5, or 5 with water
    assert list(df.columns[:3]) == ["path", "datapoint_id", "dagshub_download_url"]
    assert list(df["dagshub_download_url"]) == [(photo_root / p).resolve().as_uri() for p in df["path"]]
    assert list(df["datapoint_id"]) == [by_path[p].datapoint_id for p in df["path"]]
    assert list(df["episode"]) == [5, 7, 7] and list(df["has_water"]) == [True, False, False]

    exec(blocks[3], ns)  # blobs and downloads
    blob = b'{"label": "drop"}'
    assert ns["content"] == blob and isinstance(ns["content"], bytes)
    cache = ds.default_dataset_location / ".metadata_blobs" / hashlib.sha256(blob).hexdigest()
    assert cache.read_bytes() == blob  # get_blob saved it there
    res = ns["res"]
    assert res.paths == ["Aqua.jpg", "sub/Storm.jpg"]
    assert res["Aqua.jpg"].metadata["annotation"] == blob  # loaded into memory
    assert ns["folder"] == ds.default_dataset_location
    for p in res.paths:
        assert (ns["folder"] / p).read_bytes() == (photo_root / p).read_bytes()

    exec(blocks[4], ns)  # ML datasets and loaders
    res = ns["res"]
    assert res.paths == ["Aqua.jpg", "Blinds.jpg", "Dune.jpg"]
    image, episode = ns["image"], ns["episode"]
    assert image.dtype == torch.float32 and tuple(image.shape) == chw(photo_root / "Aqua.jpg")
    assert torch.equal(image, torch.from_numpy(pillow_chw(photo_root / "Aqua.jpg")).float())
    assert episode.dtype == torch.float32 and episode.item() == 5.0
    batches = list(ns["loader"])
    assert [b[1].tolist() for b in batches] == [[5.0], [7.0], [7.0]]
    assert [tuple(b[0].shape) for b in batches] == [(1, *chw(photo_root / p)) for p in res.paths]
    background = ns["background"]
    assert isinstance(background, torch.utils.data.IterableDataset) and len(background) == 3
    got = sorted((tuple(img.shape), ep.item()) for img, ep in background)
    assert got == sorted(
        (chw(photo_root / p), ep) for p, ep in (("Aqua.jpg", 5.0), ("Blinds.jpg", 7.0), ("Dune.jpg", 7.0))
    )
    preloaded = ns["preloaded"]
    fetched = sorted(p.relative_to(tmp_path / "preloaded").as_posix() for p in (tmp_path / "preloaded").rglob("*"))
    assert fetched == ["Aqua.jpg", "Blinds.jpg", "Dune.jpg"]
    assert len(preloaded) == 3 and tuple(preloaded[2][0].shape) == chw(photo_root / "Dune.jpg")


def test_readme_troubleshooting_and_visualize_as_written(
    default_engine: Engine, photo_root: Path, child_env: dict[str, str], tmp_path: Path
) -> None:
    """The troubleshooting block in a fresh interpreter: ``logging.basicConfig(level=DEBUG)``
    shows each query's SQL and timing on stderr, and ``visualize()`` opens the gallery in the
    browser (``$BROWSER``, here a command that prints the URL)."""
    make_source(default_engine, photo_root)
    blocks = readme_blocks()
    env = {
        **child_env,
        "DATAGO_ENGINE_DB": default_engine.url,
        "DATAGO_ENGINE_BLOBS": str(tmp_path / "default-blobs"),
        "BROWSER": f"{sys.executable} -c 'import sys; print(\"OPENED\", sys.argv[1])' %s",
    }
    script = blocks[0] + "\n" + blocks[5] + "\nimport time\ntime.sleep(0.5)\n"
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    sql = [ln for ln in out.stderr.splitlines() if ln.startswith("DEBUG:datago.engine:SQL ")]
    assert any(" ms, rowcount " in ln and "SELECT" in ln and "metadata_values" in ln for ln in sql), out.stderr[-2000:]
    queries = [ln for ln in out.stderr.splitlines() if ln.startswith("DEBUG:datago.engine:query ")]
    assert any("9 datapoints in" in ln and ln.endswith(" ms") for ln in queries), out.stderr[-2000:]
    opened = re.search(r"OPENED (\S+)", out.stdout)
    assert opened and re.match(r"http://127\.0\.0\.1:\d+/gallery\?view=", opened.group(1)), out.stdout


# --- datasources ---------------------------------------------------------------------------------


def test_get_datasource_by_name_or_id(engine: Engine, photo_root: Path) -> None:
    ds = make_source(engine, photo_root)
    other = datasources.get_or_create("more", photo_root / "sub", db_url=engine, progress=False)
    assert datasources.get_datasource(name="photos", db_url=engine).id == ds.id
    assert datasources.get_datasource("photos", engine).id == ds.id  # datago's positional form
    assert datasources.get_datasource(id=other.id, db_url=engine).name == "more"
    assert datasources.get_datasource(id=str(other.id), db_url=engine).name == "more"
    assert [d.name for d in datasources.get_datasources(engine)] == ["more", "photos"]
    with pytest.raises(KeyError, match="no datasource with id"):
        datasources.get_datasource(id=other.id + 100, db_url=engine)
    with pytest.raises(ValueError, match="either name"):
        datasources.get_datasource(db_url=engine)
    with pytest.raises(ValueError, match="either name"):
        datasources.get_datasource("photos", engine, id=ds.id)
    with pytest.raises(TypeError, match="int"):
        datasources.get_datasource(id="x", db_url=engine)
    with pytest.raises(ValueError, match="already exists"):
        datasources.create_datasource("photos", photo_root, db_url=engine)
    made = datasources.create_datasource("pngs", photo_root / "png", db_url=engine)
    assert sorted(made.all().paths) == ["Aqua.png", "Storm.png"]


def test_metadata_before_the_scan_registers_and_scan_completes(engine: Engine, photo_root: Path) -> None:
    ds = make_source(engine, photo_root)
    assert ds.count() == 9
    ds.update_metadata(["later/a.jpg", "Aqua.jpg"], {"label": "early"})
    early = ds[ds["label"] == "early"].all()
    assert early.paths == ["Aqua.jpg", "later/a.jpg"]
    assert (early["later/a.jpg"].size, early["later/a.jpg"].width, early["later/a.jpg"].format) == (None, None, None)
    (photo_root / "later").mkdir()
    src = photo_root / "sub" / "Storm.jpg"
    (photo_root / "later" / "a.jpg").write_bytes(src.read_bytes())
    (photo_root / "later" / "b.jpg").write_bytes(src.read_bytes())
    assert ds.scan(progress=False) == 2  # a.jpg completed, b.jpg added
    after = ds[ds["path"].contains("later/")].all()
    assert after.paths == ["later/a.jpg", "later/b.jpg"]
    with Image.open(src) as im:
        for d in after:
            assert (d.size, d.width, d.height, d.format) == (src.stat().st_size, im.width, im.height, "JPEG")
    assert after["later/a.jpg"].datapoint_id == early["later/a.jpg"].datapoint_id  # the same datapoint
    assert after["later/a.jpg"]["label"] == "early"
    assert ds.scan(progress=False) == 0


def test_upload_dataframe_path_column_by_name_index_or_first(engine: Engine, photo_root: Path) -> None:
    ds = make_source(engine, photo_root)
    first = pd.DataFrame({"file": ["Aqua.jpg", "Dune.jpg"], "a": [1, 2]})
    assert ds.upload_metadata_from_dataframe(first) == 2  # no path_column: the first column
    by_index = pd.DataFrame({"b": [3.5, 4.5], "where": ["Blinds.jpg", "sub/Storm.jpg"]})
    assert ds.upload_metadata_from_dataframe(by_index, path_column=1) == 2
    assert ds.upload_metadata_from_dataframe(by_index.assign(b=[5.5, 6.5]), path_column=-1) == 2
    by_name = pd.DataFrame({"c": ["x"], "p": ["FreshFlower.jpg"]})
    assert ds.upload_metadata_from_dataframe(by_name, path_column="p") == 1
    got = {d.path: d.metadata for d in ds[ds["path"] != "notes.txt"].all() if d.metadata}
    assert got == {
        "Aqua.jpg": {"a": 1},
        "Dune.jpg": {"a": 2},
        "Blinds.jpg": {"b": 5.5},
        "sub/Storm.jpg": {"b": 6.5},
        "FreshFlower.jpg": {"c": "x"},
    }
    assert ds.fields == {"a": "int", "b": "float", "c": "str"}
    with pytest.raises(KeyError, match="index 2"):
        ds.upload_metadata_from_dataframe(by_index, path_column=2)
    with pytest.raises(KeyError, match="'nope'"):
        ds.upload_metadata_from_dataframe(by_index, path_column="nope")


# --- dataframe download URLs ----------------------------------------------------------------------


def test_dataframe_download_url_file_or_server(engine: Engine, photo_root: Path) -> None:
    from datago.engine import serve_in_background

    ds = make_source(engine, photo_root)
    df = ds.all().dataframe
    assert list(df.columns[:3]) == ["path", "datapoint_id", "dagshub_download_url"]
    for path, url in zip(df["path"], df["dagshub_download_url"], strict=True):
        assert url == (photo_root / path).resolve().as_uri()
        assert Path(url.removeprefix("file://")).read_bytes() == (photo_root / path).read_bytes()
    base_url, _key, stop = serve_in_background(engine)
    try:
        engine.server_url = base_url
        df = ds[ds["format"].is_not_null()].all().dataframe
        with httpx.Client(timeout=30) as client:
            for path, url in zip(df["path"], df["dagshub_download_url"], strict=True):
                assert url.startswith(f"{base_url}/files/{ds.id}/") and "sig=" in url
                r = client.get(url)  # no API key: the URL is signed
                assert r.status_code == 200 and r.content == (photo_root / path).read_bytes()
        first = ds.all()[0]  # the same URL (up to its expiry second) through datapoint[...]
        assert first["dagshub_download_url"].split("?")[0] == df["dagshub_download_url"][0].split("?")[0]
    finally:
        engine.server_url = None
        stop()


# --- blobs -----------------------------------------------------------------------------------------


def test_get_blob_saves_to_cache_and_replaces_value(engine: Engine, photo_root: Path, datasets_dir: Path) -> None:
    ds = make_source(engine, photo_root)
    blob = (photo_root / "png" / "Aqua.png").read_bytes()
    sha = hashlib.sha256(blob).hexdigest()
    ds.update_metadata("Aqua.jpg", {"thumb": blob, "label": "water"})
    dp = ds.all()["Aqua.jpg"]
    assert dp["thumb"] == sha and dp["label"] == "water" and dp["path"] == "Aqua.jpg"
    assert dp["datapoint_id"] == dp.datapoint_id and dp["width"] == chw(photo_root / "Aqua.jpg")[2]
    with pytest.raises(KeyError, match="'nope'"):
        dp["nope"]
    assert ds.default_dataset_location.parent == datasets_dir
    assert dp.get_blob("thumb") == blob
    cached = ds.default_dataset_location / ".metadata_blobs" / sha
    assert dp["thumb"] == cached and isinstance(dp["thumb"], Path) and cached.read_bytes() == blob
    # the next datapoint object reads the cache, not the store
    engine.blobs.path_for(sha).unlink()
    again = ds.all()["Aqua.jpg"]
    assert again.get_blob("thumb") == blob and again["thumb"] == cached
    assert again.get_blob("thumb") == blob  # from the path now in the value
    kept = ds.all()["Aqua.jpg"]
    assert kept.get_blob("thumb", store_value=True) == blob and kept["thumb"] == blob
    cached.unlink()
    nocache = ds.all()["Aqua.jpg"]
    with pytest.raises(FileNotFoundError):
        nocache.get_blob("thumb", cache_on_disk=False)  # neither cache nor store has it now
    engine.blobs.put(blob)
    assert nocache.get_blob("thumb", cache_on_disk=False) == blob and nocache["thumb"] == sha
    assert not cached.exists()
    with pytest.raises(TypeError, match="not a blob"):
        nocache.get_blob("label")


def test_get_blob_fields_defaults_to_paths_of_every_blob_field(engine: Engine, photo_root: Path) -> None:
    ds = make_source(engine, photo_root)
    blobs = {p: hashlib.sha256(p.encode()).digest() * 3 for p in ("Aqua.jpg", "Blinds.jpg", "Dune.jpg")}
    with ds.metadata_context() as ctx:
        for p, b in blobs.items():
            ctx.update_metadata(p, {"emb": b, "mask": b[::-1], "label": p})
    res = ds.all()
    assert res.get_blob_fields() is res  # no fields: every blob field
    for d in res:
        if d.path in blobs:
            assert isinstance(d["emb"], Path) and d["emb"].read_bytes() == blobs[d.path]
            assert isinstance(d["mask"], Path) and d["mask"].read_bytes() == blobs[d.path][::-1]
            assert d["label"] == d.path
        else:
            assert "emb" not in d.metadata
    as_str = ds.all().get_blob_fields("emb", path_format="str")
    assert all(isinstance(d["emb"], str) and Path(d["emb"]).is_file() for d in as_str if d.path in blobs)
    assert all(len(d["mask"]) == 64 for d in as_str if d.path in blobs)  # not asked for: still the sha
    loaded = ds.all().get_blob_fields("emb", load_into_memory=True)
    assert {d.path: d["emb"] for d in loaded if "emb" in d.metadata} == blobs
    with pytest.raises(ValueError, match="load_into_memory"):
        ds.all().get_blob_fields("emb", cache_on_disk=False)


def test_download_files_default_folder_and_options(engine: Engine, photo_root: Path, tmp_path: Path) -> None:
    ds = make_source(engine, photo_root)
    res = ds[ds["format"] == "PNG"].all()
    folder = res.download_files(progress=False)
    assert folder == ds.default_dataset_location
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "png/Aqua.png",
        "png/Storm.png",
    ]
    (folder / "png" / "Aqua.png").write_bytes(b"changed")
    res.download_files(progress=False)  # existing files are kept
    assert (folder / "png" / "Aqua.png").read_bytes() == b"changed"
    res.download_files(progress=False, redownload=True)
    assert (folder / "png" / "Aqua.png").read_bytes() == (photo_root / "png" / "Aqua.png").read_bytes()
    ds.update_metadata("Aqua.jpg", {"small": "png/Aqua.png"})
    out = ds.all().download_files(tmp_path / "by-field", path_field="small", progress=False)
    assert [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()] == ["png/Aqua.png"]
    one = ds.all()["Dune.jpg"].download_file(tmp_path / "single")
    assert one == tmp_path / "single" / "Dune.jpg" and one.read_bytes() == (photo_root / "Dune.jpg").read_bytes()


# --- ML datasets -----------------------------------------------------------------------------------


@pytest.fixture
def labelled(engine: Engine, photo_root: Path) -> Datasource:
    ds = make_source(engine, photo_root)
    ds.upload_metadata_from_dataframe(
        pd.DataFrame(
            {
                "path": ["Aqua.jpg", "Dune.jpg", "png/Storm.png", "sub/GreenMeadow.jpg"],
                "score": [0.5, 0.25, 0.75, 1.0],
                "small": ["png/Aqua.png", "png/Storm.png", "png/Storm.png", "png/Aqua.png"],
                "label": ["water", "sand", "sky", "grass"],
            }
        )
    )
    return ds


def test_lazy_fetches_on_access_into_savedir(labelled: Datasource, photo_root: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    res = labelled[labelled["score"] > 0].all()
    save = tmp_path / "lazy"
    dataset = res.as_ml_dataset("torch", metadata_columns=["score", "datapoint_id"], savedir=save)
    assert isinstance(dataset, torch.utils.data.Dataset) and len(dataset) == 4
    assert not save.exists()  # lazy: nothing fetched yet
    image, score, dp_id = dataset[2]
    assert [p.relative_to(save).as_posix() for p in save.rglob("*") if p.is_file()] == ["png/Storm.png"]
    assert image.dtype == torch.float32 and tuple(image.shape) == (3, 50, 30)
    assert torch.equal(image, torch.from_numpy(pillow_chw(photo_root / "png" / "Storm.png")).float())
    assert score.dtype == torch.float32 and score.item() == 0.75
    assert dp_id.item() == res["png/Storm.png"].datapoint_id
    assert dataset.savedir == save and dataset.strategy == "lazy"
    copy = pickle.loads(pickle.dumps(dataset))  # as DataLoader workers under spawn receive it
    assert type(copy) is type(dataset) and torch.equal(copy[2][0], image) and copy[2][2].item() == dp_id.item()


def test_preload_fetches_everything_before_the_first_item(labelled: Datasource, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    res = labelled[labelled["score"] > 0].all()
    res.as_ml_dataset("torch", strategy="preload", savedir=tmp_path / "pre", processes=2)
    got = sorted(p.relative_to(tmp_path / "pre").as_posix() for p in (tmp_path / "pre").rglob("*") if p.is_file())
    assert got == ["Aqua.jpg", "Dune.jpg", "png/Storm.png", "sub/GreenMeadow.jpg"]
    default = res.as_ml_dataset("torch", strategy="preload")
    assert default.savedir == labelled.default_dataset_location
    assert (labelled.default_dataset_location / "sub" / "GreenMeadow.jpg").is_file()


def test_background_prefetches_in_the_core(labelled: Datasource, photo_root: Path) -> None:
    torch = pytest.importorskip("torch")
    import datago.torch as dt

    res = labelled[labelled["score"] > 0.3].all()
    dataset = res.as_ml_dataset("torch", strategy="background", metadata_columns=["datapoint_id", "score"])
    assert isinstance(dataset, torch.utils.data.IterableDataset) and len(dataset) == 3
    assert isinstance(dataset.source, dt.DatagoIterableDataset)
    assert dataset.source.config["source_type"] == "db"  # the core reads the query from the engine server
    assert type(pickle.loads(pickle.dumps(dataset))) is type(dataset)
    by_id = {d.datapoint_id: d for d in res}
    seen = {}
    for image, dp_id, score in dataset:
        d = by_id[int(dp_id.item())]
        assert score.item() == d["score"]
        ref = pillow_chw(photo_root / d.path).astype(np.float32)
        assert image.dtype == torch.float32 and tuple(image.shape) == ref.shape
        assert float(np.abs(image.numpy() - ref).mean()) < 2.0  # libvips' decode vs Pillow's
        seen[d.path] = tuple(image.shape)
    assert seen == {p: chw(photo_root / p) for p in ("Aqua.jpg", "png/Storm.png", "sub/GreenMeadow.jpg")}
    # the core's image settings pass through
    small = res.as_ml_dataset(
        "torch",
        strategy="background",
        client_config={"image_config": {"crop_and_resize": True, "default_image_size": 64, "downsampling_ratio": 16}},
    )
    assert all(max(item[0].shape[1:]) <= 128 for item in small)


def test_tensorizers_forms(labelled: Datasource, photo_root: Path) -> None:
    torch = pytest.importorskip("torch")
    res = labelled[labelled["score"] > 0.3].all()
    auto = res.as_ml_dataset("torch", metadata_columns=["score", "small"])
    image, score, small = auto[0]  # auto: image by extension, numbers, an image path column
    assert (
        tuple(image.shape) == chw(photo_root / "Aqua.jpg") and score.item() == 0.5 and tuple(small.shape) == (3, 40, 64)
    )
    with pytest.raises(ValueError, match="'label'"):
        res.as_ml_dataset("torch", metadata_columns=["label"])  # auto cannot tensorize a plain str
    every = res.as_ml_dataset("torch", metadata_columns=["small"], tensorizers="image")
    assert [tuple(t.shape) for t in every[1]] == [(3, 50, 30), (3, 50, 30)]
    mixed = res.as_ml_dataset(
        "torch", metadata_columns=["label", "score"], tensorizers=[lambda p: Path(p).name, len, "numeric"]
    )
    assert mixed[2][0] == "GreenMeadow.jpg" and mixed[2][1] == 5 and mixed[2][2].item() == 1.0
    whole = res.as_ml_dataset(
        "torch", metadata_columns=["label"], tensorizers=lambda item: (Path(item[0]).name, item[1])
    )
    assert [whole[i] for i in range(3)] == [("Aqua.jpg", "water"), ("Storm.png", "sky"), ("GreenMeadow.jpg", "grass")]
    with pytest.raises(ValueError, match="needs 2"):
        res.as_ml_dataset("torch", metadata_columns=["score"], tensorizers=["image"])
    with pytest.raises(ValueError, match="audio"):
        res.as_ml_dataset("torch", tensorizers="audio")
    with pytest.raises(ValueError, match="strategy"):
        res.as_ml_dataset("torch", strategy="eager")
    with pytest.raises(ValueError, match="flavor"):
        res.as_ml_dataset("jax")
    with pytest.raises(TypeError, match="batch_size"):
        res.as_ml_dataset("torch", batch_size=2)
    assert isinstance(torch.utils.data.DataLoader(every, batch_size=2).dataset, torch.utils.data.Dataset)


def test_as_ml_dataloader_splits_arguments(labelled: Datasource) -> None:
    torch = pytest.importorskip("torch")
    res = labelled[labelled["score"] > 0.6].all()
    loader = res.as_ml_dataloader("torch", metadata_columns=["score"], batch_size=1, shuffle=False)
    assert isinstance(loader, torch.utils.data.DataLoader) and loader.batch_size == 1
    assert [b[1].tolist() for b in loader] == [[0.75], [1.0]]
    dataset = res.as_ml_dataset("torch", metadata_columns=["score"])
    again = res.as_ml_dataloader(dataset, batch_size=1)  # a dataset instead of a flavor
    assert again.dataset is dataset
    workers = res.as_ml_dataloader(
        "torch", metadata_columns=["score"], batch_size=1, num_workers=2, multiprocessing_context="spawn"
    )
    assert [b[1].tolist() for b in workers] == [[0.75], [1.0]]  # the dataset pickles into worker processes
    with pytest.raises(TypeError, match="need a flavor"):
        res.as_ml_dataloader(dataset, metadata_columns=["score"])
    everything = labelled[labelled["score"] > 0].all()
    background = everything.as_ml_dataloader(
        "torch", strategy="background", metadata_columns=["datapoint_id"], batch_size=1, shuffle=True
    )
    assert background.dataset.source.config["source_config"]["random_sampling"] is True
    assert sorted(int(b[1].item()) for b in background) == sorted(d.datapoint_id for d in everything)


def test_tensorflow_flavor_needs_tensorflow(labelled: Datasource, monkeypatch: pytest.MonkeyPatch) -> None:
    res = labelled[labelled["score"] > 0.3].all()
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # not installed
    with pytest.raises(ImportError, match="pip install tensorflow"):
        res.as_ml_dataset("tensorflow")
    with pytest.raises(ImportError, match="pip install tensorflow"):
        res.as_ml_dataloader("tensorflow", batch_size=2)


def test_tensorflow_flavor_builds_a_tf_data_dataset(
    labelled: Datasource, photo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With TensorFlow importable (a stand-in module recording the calls, since the real one is
    not installed here): ``tf.data.Dataset.from_generator`` with one spec per element, images
    channel-last float32, files local before the first item for ``preload``."""
    calls: dict[str, Any] = {}

    class FakeDataset:
        def __init__(self, gen: Any, output_signature: Any) -> None:
            self.gen, self.signature = gen, output_signature

        @classmethod
        def from_generator(cls, gen: Any, output_signature: Any) -> FakeDataset:
            calls["signature"] = output_signature
            return cls(gen, output_signature)

        def batch(self, n: int) -> tuple[str, int]:
            return ("batched", n)

    tf = types.ModuleType("tensorflow")
    tf.data = types.SimpleNamespace(Dataset=FakeDataset)  # type: ignore[attr-defined]
    tf.TensorSpec = lambda shape, dtype: ("spec", tuple(shape), dtype)  # type: ignore[attr-defined]
    tf.as_dtype = lambda d: str(d)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorflow", tf)
    res = labelled[labelled["score"] > 0.3].all()
    ds = res.as_ml_dataset("tensorflow", metadata_columns=["score"], strategy="preload")
    assert ds.type == "tensorflow"
    assert calls["signature"] == (("spec", (None, None, 3), "float32"), ("spec", (), "float32"))
    items = [(i[0].shape, i[0].dtype, float(i[1])) for i in ds.gen()]
    hwc = [(*chw(photo_root / p)[1:], 3) for p in ("Aqua.jpg", "png/Storm.png", "sub/GreenMeadow.jpg")]
    assert items == [(hwc[0], "float32", 0.5), (hwc[1], "float32", 0.75), (hwc[2], "float32", 1.0)]
    assert res.as_ml_dataloader(ds, batch_size=4) == ("batched", 4)


def test_dict_config_still_gives_a_datago_client(labelled: Datasource) -> None:
    from datago import DatagoClient

    res = labelled[labelled["score"] > 0.3].all()
    cfg = {"image_config": {"crop_and_resize": True, "default_image_size": 64, "downsampling_ratio": 16}}
    with res.as_ml_dataset(cfg, page_size=2) as client:
        assert isinstance(client, DatagoClient)
        ids = sorted(s.id for s in client)
    with res.as_ml_dataset(client_config=cfg) as client:
        assert sorted(s.id for s in client) == ids
    assert ids == sorted(str(d.datapoint_id) for d in res)


# --- logging -----------------------------------------------------------------------------------


def test_debug_log_shows_sql_and_timing(engine: Engine, photo_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    ds = make_source(engine, photo_root)
    ds.update_metadata("Aqua.jpg", {"label": "water"})
    with caplog.at_level(logging.INFO, logger="datago.engine"):
        ds[ds["label"] == "water"].all()
    assert not [r for r in caplog.records if r.name == "datago.engine"]  # nothing below DEBUG
    with caplog.at_level(logging.DEBUG, logger="datago.engine"):
        res = ds[ds["label"] == "water"].all()
    msgs = [r.getMessage() for r in caplog.records if r.name == "datago.engine"]
    sql = [m for m in msgs if m.startswith("SQL ")]
    assert sql and all(re.match(r"SQL \d+\.\d\d ms, rowcount -?\d+", m) for m in sql)
    assert any("metadata_values" in m and "'water'" in m for m in sql)  # the statement and its parameters
    query = [m for m in msgs if m.startswith("query ")]
    assert len(query) == 1 and '"label"' in query[0] and query[0].endswith(" ms") and "1 datapoints" in query[0]
    assert res.paths == ["Aqua.jpg"]
