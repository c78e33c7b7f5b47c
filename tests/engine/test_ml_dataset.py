"""End to end through the Go core, on SQLite and PostgreSQL: scan real photos, add metadata (a
DataFrame and a metadata context), query with AND/OR/NOT, contains and null checks, and load the
result with ``as_ml_dataset``: the samples the native loader yields are the datapoints SQL
returns, with their attributes."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from datago.engine import datasources
from datago.engine.db import Engine
from datago.engine.server import routes_files
from datago.engine.tokens import list_tokens, verify_token

IMAGE_CONFIG = {
    "crop_and_resize": True,
    "default_image_size": 256,
    "downsampling_ratio": 16,
    "min_aspect_ratio": 0.5,
    "max_aspect_ratio": 2.0,
}
TAKEN = dt.datetime(2021, 5, 1, 10, 0, tzinfo=dt.timezone.utc)


def require_native_client() -> None:
    """Fail (never skip) unless the datago module and its native library load."""
    import datago

    try:
        datago._lib.lib()
    except OSError as e:
        pytest.fail(f"the native datago library does not load (build it: ./build.sh): {e}")


def test_query_result_loads_through_go_core(engine: Engine, photo_root: Path) -> None:
    require_native_client()
    ds = datasources.get_or_create("photos", photo_root, db_url=engine, progress=False)
    df = pd.DataFrame(
        {
            "path": ["Aqua.jpg", "Blinds.jpg", "Dune.jpg", "FreshFlower.jpg", "sub/GreenMeadow.jpg", "png/Aqua.png"],
            "score": [0.9, 0.4, 0.7, 0.8, 0.5, 0.2],
            "label": ["water", "indoor", "desert", "flower", None, "water"],
            "votes": pd.array([10, 3, 7, None, 5, 0], dtype="Int64"),
        }
    )
    ds.upload_metadata_from_dataframe(df, path_column="path")
    with ds.metadata_context() as ctx:
        ctx.update_metadata("Aqua.jpg", {"caption": "blue water drops", "flagged": False, "taken": TAKEN})
        ctx.update_metadata(["Blinds.jpg", "Dune.jpg"], {"caption": "window blinds and dunes"})
        ctx.update_metadata("sub/Storm.jpg", {"caption": "storm clouds", "tags": ["sky", "dark"]})
        ctx.update_metadata("Dune.jpg", {"flagged": True})
    view = ds[
        ((ds["score"] >= 0.5) | ds["caption"].contains("storm"))
        & ~(ds["label"] == "desert")
        & (ds["flagged"].is_null() | (ds["flagged"] == False))  # noqa: E712
        & ds["format"].is_not_null()
    ]
    want = {str(d.datapoint_id): d for d in view.all()}
    assert sorted(d.path for d in want.values()) == [
        "Aqua.jpg",
        "FreshFlower.jpg",
        "sub/GreenMeadow.jpg",
        "sub/Storm.jpg",
    ]

    # a server URL given: that server is used, none is started
    cfg = view.all().ml_dataset_config(api_url="http://127.0.0.1:9/api/", page_size=3)
    assert engine._background is None
    assert cfg["source_type"] == "db" and "api_key" not in cfg["source_config"]
    assert cfg["source_config"]["query"] == view.query.to_json()

    # none given: an in-process server on 127.0.0.1
    with view.all().as_ml_dataset({"image_config": IMAGE_CONFIG, "samples_buffer_size": 4}, page_size=3) as client:
        samples = list(client)
        stats = client.stats()
    assert engine._background is not None and engine._background[0].startswith("http://127.0.0.1:")
    base, key = engine.background_server()
    write = {"updates": [{"path": "Aqua.jpg", "metadata": {"label": "changed"}}]}
    r = httpx.post(f"{base}/api/datasources/photos/metadata", json=write, headers={"Authorization": f"Token {key}"})
    assert r.status_code == 403  # the loader's key only reads
    assert sorted(s.id for s in samples) == sorted(want)
    assert stats["samples_skipped"] == 0
    for s in samples:
        d = want[s.id]
        assert s.source == "photos"
        expected = {k: v for k, v in d.metadata.items() if k != "tags"}
        if "taken" in expected:
            expected["taken"] = TAKEN.isoformat()
        assert s.attributes == expected, d.path
        assert sorted(s.tags) == sorted(d.metadata["tags"].split(",") if "tags" in d.metadata else [])
        assert (s.original_width, s.original_height) == (d.width, d.height)
        assert s.image is not None and max(s.image.size) <= 512
    by_path = {want[s.id].path: s for s in samples}
    assert type(by_path["Aqua.jpg"].attributes["votes"]) is int
    assert type(by_path["Aqua.jpg"].attributes["flagged"]) is bool
    assert by_path["Aqua.jpg"].attributes["taken"] == "2021-05-01T10:00:00+00:00"
    assert sorted(by_path["sub/Storm.jpg"].tags) == ["dark", "sky"]
    del samples, s, by_path


def test_embedded_loader_reads_local_files(engine: Engine, photo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the in-process server and a local root, the core reads the images from disk: no
    request for a file reaches the server, and the samples are those the server path gives."""
    require_native_client()
    ds = datasources.get_or_create("photos", photo_root, db_url=engine, progress=False)
    served: list[str] = []
    resolve = routes_files.resolve_file

    def counting(ctx: object, ds_id: str, path: str, *args: object) -> object:
        served.append(path)
        return resolve(ctx, ds_id, path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(routes_files, "resolve_file", counting)
    client_config = {"image_config": IMAGE_CONFIG, "samples_buffer_size": 4}
    images = ds[ds["format"].is_not_null()]  # the root also holds a text file
    cfg = images.all().ml_dataset_config(client_config, page_size=5)
    base, _key = engine.background_server()
    assert cfg["source_config"]["local_roots"] == {f"{base}/files/{ds.id}/": str(photo_root.resolve())}

    def load(**source_config: object) -> dict[str, np.ndarray]:
        with images.all().as_ml_dataset(client_config, page_size=5, **source_config) as client:
            out = {s.id: np.asarray(s.image) for s in client}
            assert client.stats()["samples_skipped"] == 0
        return out

    local = load()
    n = len(images.all().entries)
    assert len(local) == n >= 5
    assert served == []  # nothing went over HTTP but the pages
    # the server path stays for loaders on other machines (local_roots={}: every file from the server)
    remote = load(local_roots={})
    assert len(served) == n
    assert local.keys() == remote.keys()
    for k, arr in local.items():
        assert np.array_equal(arr, remote[k]), k


def test_background_server_key_revoked_at_exit(tmp_path: Path, photo_root: Path, child_env: dict[str, str]) -> None:
    """A process that loads through the in-process server and exits without cleaning up leaves
    no usable key behind."""
    db = tmp_path / "engine.sqlite"
    script = (
        "import sys\n"
        "from datago.engine import datasources\n"
        "ds = datasources.get_or_create('photos', sys.argv[2], db_url=sys.argv[1], progress=False)\n"
        "cfg = ds.all().ml_dataset_config()\n"
        "print(cfg['source_config']['api_key'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(db), str(photo_root)],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env,
    )
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip()
    engine = Engine(db)
    try:
        assert key.startswith("dg_") and verify_token(engine, key) is None
        (token,) = list_tokens(engine, include_revoked=True)
        assert token.name.startswith("background-") and token.read_only and token.revoked_at is not None
    finally:
        engine.dispose()
