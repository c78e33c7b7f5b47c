"""Damaged image data never reaches training: the committed corpus of corrupt files
(tests/data/corrupt, written by make_corpus.py from a real photo with fixed seeds) is judged by
``image_config.fail_on`` as its manifest says, whatever the crop settings; refused files are
counted in ``stats()['corrupt_data']`` and logged with their path and their own message."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

import datago
from photos_util import file_config

CORPUS = Path(__file__).resolve().parent / "data" / "corrupt"
FAIL_ON = ("warning", "error", "none")
CROPS: dict[str, dict[str, Any]] = {
    "none": {"crop_and_resize": False},
    "256": {"crop_and_resize": True, "default_image_size": 256},
    "512": {"crop_and_resize": True, "default_image_size": 512},
}


def manifest() -> dict[str, dict[str, Any]]:
    """The corpus' files: name -> {"what", "bytes", "verdict": {fail_on: "ok" | skip reason}}.
    A missing corpus fails the test (it is committed)."""
    path = CORPUS / "manifest.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing: the corrupt corpus is committed (tests/data/corrupt)")
    files: dict[str, dict[str, Any]] = json.loads(path.read_text())["files"]
    for name in files:
        if not (CORPUS / name).is_file():
            pytest.fail(f"corpus file {name} is missing")
    return files


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the corpus' images (not the manifest nor the generator)."""
    d = tmp_path_factory.mktemp("corrupt")
    for name in manifest():
        shutil.copy(CORPUS / name, d / name)
    return d


@pytest.mark.parametrize("crop", list(CROPS))
@pytest.mark.parametrize("fail_on", FAIL_ON)
def test_corpus_verdicts(corpus_dir: Path, fail_on: str, crop: str, caplog: pytest.LogCaptureFixture) -> None:
    files = manifest()
    datago.initialize_logging("warn")
    caplog.set_level(logging.WARNING, logger="datago")
    cfg = file_config(corpus_dir, image_config={**CROPS[crop], "fail_on": fail_on})
    with datago.DatagoClient(cfg) as client:
        delivered = sorted(s.id for s in client)
        stats = client.stats()
    want = {n: f["verdict"][fail_on] for n, f in files.items()}
    assert delivered == sorted(n for n, v in want.items() if v == "ok")
    reasons: dict[str, int] = {}
    for v in want.values():
        if v != "ok":
            reasons[v] = reasons.get(v, 0) + 1
    assert stats["skipped_reasons"] == reasons
    assert stats["corrupt_data"] == reasons.get("corrupt_data", 0)
    # each skip is logged with its path and a message of its own format (a PNG's is never a
    # JPEG's, and none is empty)
    skips = {
        Path(r.datago_attrs["path"]).name: r.datago_attrs
        for r in caplog.records
        if getattr(r, "datago_attrs", {}).get("path")
    }
    for name, v in want.items():
        if v == "ok":
            continue
        assert name in skips, f"{name} was not logged with its path"
        attrs = skips[name]
        assert attrs["reason"] == v
        msg = attrs["error"].split(": ", 1)[1]
        assert msg.strip(), f"{name}: empty message"
        if name.endswith(".png") and v == "corrupt_data":
            assert msg.startswith("png: "), f"{name}: {msg!r} is not a PNG's message"
        if name.endswith(".jpg"):
            assert "png" not in msg.lower(), f"{name}: {msg!r} is a PNG's message"


def test_corrupt_jpeg_is_refused_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The default (fail_on "warning"): a JPEG with corrupt entropy data below the crop window
    is skipped as corrupt_data, with libjpeg's message and its path in the log."""
    shutil.copy(CORPUS / "jpeg_ok_tall.jpg", tmp_path / "ok.jpg")
    shutil.copy(CORPUS / "jpeg_marker_bottom_tall.jpg", tmp_path / "bad.jpg")
    datago.initialize_logging("warn")
    caplog.set_level(logging.WARNING, logger="datago")
    with datago.DatagoClient(file_config(tmp_path)) as client:
        assert [s.id for s in client] == ["ok.jpg"]
        stats = client.stats()
    assert stats["corrupt_data"] == 1
    assert stats["skipped_reasons"] == {"corrupt_data": 1}
    rec = next(r for r in caplog.records if getattr(r, "datago_attrs", {}).get("path", "").endswith("bad.jpg"))
    assert "Corrupt JPEG data" in rec.datago_attrs["error"]


def test_fail_on_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"image_config\.fail_on"):
        datago.DatagoClient(file_config(tmp_path, image_config={"fail_on": "warnings"}))


def test_libvips_warnings_do_not_reach_stderr(corpus_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """With logging off, libvips' and libpng's / libjpeg's warnings about damaged data (which
    libvips prints with GLib, on stderr, by default) are not printed: they go to datago's log."""
    datago.initialize_logging("off")
    cfg = file_config(corpus_dir, image_config={"crop_and_resize": False, "fail_on": "none"})
    with datago.DatagoClient(cfg) as client:
        n = sum(1 for _ in client)
    assert n > 0
    err = capfd.readouterr().err
    assert "VIPS" not in err and "WARNING" not in err, err[:500]
