"""Fixtures for the engine tests: an engine per backend (SQLite always, PostgreSQL when
``DATAGO_TEST_POSTGRES_URL`` is set, see ``start_postgres.sh``; under CI, ``CI=true``, it must be
set) and a folder of real photos."""

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

# the committed test photographs (tests/data/photos/LICENSE.md): mate-backgrounds photos at 40 %
# of their Debian size, e.g. Dune.jpg 672x420, Aqua.jpg 1024x640 (the widest here)
PHOTOS = Path(__file__).resolve().parents[1] / "data" / "photos"
JPEGS = ["Aqua.jpg", "Blinds.jpg", "Dune.jpg", "FreshFlower.jpg", "GreenMeadow.jpg", "Storm.jpg"]
POSTGRES_ENV = "DATAGO_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """``$DATAGO_TEST_POSTGRES_URL`` (None when unset) with a schema of this test session as
    the search path, so that concurrent test runs on one database do not meet; the schema is
    dropped at the end."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        yield None
        return
    import sqlalchemy as sa

    from datago.engine.db import normalize_db_url

    schema = f"datago_test_{os.getpid()}"
    admin = sa.create_engine(normalize_db_url(url))
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    session_url = sa.engine.make_url(normalize_db_url(url)).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield session_url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(autouse=True)
def datasets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$DATAGO_DATASETS_DIR`` of each test: its own folder (``default_dataset_location``, blob
    caches and default download folders never land in the home folder or leak between tests)."""
    folder = tmp_path / "datasets"
    monkeypatch.setenv("DATAGO_DATASETS_DIR", str(folder))
    return folder


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str | None) -> Iterator[object]:
    """An empty engine on SQLite (a temp file) or PostgreSQL (in this session's schema, tables
    dropped and recreated)."""
    from datago.engine.db import Engine

    if request.param == "sqlite":
        eng = Engine(tmp_path / "engine.sqlite")
    else:
        if not postgres_url:
            how = f"{POSTGRES_ENV} is not set: run 'eval \"$(bash tests/engine/start_postgres.sh)\"' first"
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(f"CI runs every backend: {how}")
            pytest.skip(how)
        eng = Engine(postgres_url, blob_dir=tmp_path / "blobs")
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
        pytest.fail(f"test photos missing from {PHOTOS} (they are committed in the repository): {missing}")
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


@pytest.fixture
def child_env() -> dict[str, str]:
    """The environment for child Python processes: this checkout's ``python/`` first on
    ``PYTHONPATH`` (as this process imports it), so that they run the code under test."""
    paths = [str(_PYTHON_DIR), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
