"""benchmarks/demo_data.py's web-like style: the distribution its plan draws (deterministic in the
seed) and the files it writes (JPEG chroma subsampling, progressive, size), from the committed
photographs."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest
from PIL import Image, JpegImagePlugin

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import demo_data  # noqa: E402

PHOTOS = sorted(p for p in (ROOT / "tests" / "data" / "photos").iterdir() if p.suffix in (".jpg", ".png"))


def test_web_plan_distribution(tmp_path: Path) -> None:
    tasks = demo_data.plan_style(PHOTOS, tmp_path, 2000, seed=0, style="web")
    assert tasks == demo_data.plan_style(PHOTOS, tmp_path, 2000, seed=0, style="web")
    assert tasks != demo_data.plan_style(PHOTOS, tmp_path, 2000, seed=1, style="web")
    shorts = [min(t.size) for t in tasks]
    assert min(shorts) >= 384 and max(shorts) <= 1536
    assert statistics.mean(shorts) == pytest.approx(960, abs=25)  # uniform 384..1536
    ratios = [max(t.size) / min(t.size) for t in tasks]
    assert max(ratios) <= 2.01
    st = demo_data.plan_stats(tasks)
    assert 1.35 <= st["mpix_mean"] <= 1.6  # ≈ 1.47 MPix
    assert 0.07 <= st["png"] <= 0.13
    assert 0.12 <= st["subsampling_444"] <= 0.18
    assert 0.07 <= st["progressive"] <= 0.13
    jpegs = [t for t in tasks if t.fmt == "JPEG"]
    assert {t.quality for t in jpegs} == set(range(80, 96))
    assert {t.subsampling for t in jpegs} == {0, 2}
    assert all(t.subsampling is None and not t.progressive for t in tasks if t.fmt == "PNG")
    # the easy style is the earlier plan
    assert demo_data.plan_style(PHOTOS, tmp_path, 50, seed=0, style="easy") == demo_data.plan(PHOTOS, tmp_path, 50, 0)


def test_web_files_have_the_planned_encoding(tmp_path: Path) -> None:
    tasks = demo_data.plan_style(PHOTOS, tmp_path, 400, seed=0, style="web")
    pick = [
        next(t for t in tasks if t.fmt == "JPEG" and t.subsampling == 0 and t.orientation == 1),
        next(t for t in tasks if t.fmt == "JPEG" and t.subsampling == 2 and t.progressive and t.orientation == 1),
        next(t for t in tasks if t.fmt == "PNG"),
    ]
    for k in range(demo_data.N_SUBFOLDERS):
        (tmp_path / f"part{k}").mkdir()
    for t in pick:
        demo_data.render(t)
        with Image.open(t.out_path) as im:
            assert im.size == t.size and im.format == t.fmt
            if t.fmt == "JPEG":
                assert JpegImagePlugin.get_sampling(im) == t.subsampling
                assert bool(im.info.get("progressive")) == t.progressive
