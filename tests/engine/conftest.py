"""Fixtures for the engine tests: an engine per backend (SQLite always, PostgreSQL when
``DATAGO_TEST_POSTGRES_URL`` is set, see ``start_postgres.sh``) and a folder of real photos."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_PYTHON_DIR = Path(__file__).resolve().parents[2] / "python"
if str(_PYTHON_DIR) not in sys.path:
    sys.path.insert(0, str(_PYTHON_DIR))

PHOTOS = Path("/usr/share/backgrounds/mate/nature")
JPEGS = ["Aqua.jpg", "Blinds.jpg", "Dune.jpg", "FreshFlower.jpg", "GreenMeadow.jpg", "Storm.jpg"]
POSTGRES_ENV = "DATAGO_TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """An empty engine on SQLite (a temp file) or PostgreSQL (tables dropped and recreated)."""
    from datago.engine.db import Engine

    if request.param == "sqlite":
        eng = Engine(tmp_path / "engine.sqlite")
    else:
        url = os.environ.get(POSTGRES_ENV)
        if not url:
            pytest.skip(f"{POSTGRES_ENV} is not set: run 'eval \"$(bash tests/engine/start_postgres.sh)\"' first")
        eng = Engine(url, blob_dir=tmp_path / "blobs")
        eng.drop_all()
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture(scope="session")
def photo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of real photos: 4 JPEGs at the top, 2 in ``sub/``, 2 small PNGs made from them
    in ``png/``, and a text file that is not an image."""
    missing = [n for n in JPEGS if not (PHOTOS / n).is_file()]
    if missing:
        pytest.skip(f"photos missing from {PHOTOS} (apt-get install mate-backgrounds): {missing}")
    from PIL import Image

    root = tmp_path_factory.mktemp("photos")
    (root / "sub").mkdir()
    (root / "png").mkdir()
    for i, name in enumerate(JPEGS):
        shutil.copyfile(PHOTOS / name, root / ("sub" if i >= 4 else ".") / name)
    for name, size in (("Aqua.jpg", (64, 40)), ("Storm.jpg", (30, 50))):
        with Image.open(PHOTOS / name) as im:
            im.draft("RGB", (size[0] * 4, size[1] * 4))
            im.convert("RGB").resize(size).save(root / "png" / name.replace(".jpg", ".png"))
    (root / "notes.txt").write_text("not an image\n")
    return root


@pytest.fixture
def photo_root(photo_template: Path, tmp_path: Path) -> Path:
    """A private copy of :func:`photo_template` (tests may add files)."""
    root = tmp_path / "root"
    shutil.copytree(photo_template, root)
    return root


def _files_of(root: Path) -> dict[str, Path]:
    return {
        p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")
    }


@pytest.fixture
def files_of() -> Callable[[Path], dict[str, Path]]:
    """A function: folder -> {relative path: file} for every non-hidden file under it."""
    return _files_of
