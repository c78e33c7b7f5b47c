"""Shared fixtures: real photographs (committed in tests/data/photos) and the odd files around them."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "tests"))

from s3_util import S3Server  # noqa: E402

from photos_util import file_config, real_photos  # noqa: E402


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    """The real photographs (JPEG and PNG, RGB, 240-1024 px wide)."""
    return real_photos()


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory: pytest.TempPathFactory, photos: list[Path]) -> Path:
    """A folder of the real photos, in two subfolders."""
    d = tmp_path_factory.mktemp("photos")
    for i, p in enumerate(photos):
        sub = d / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        shutil.copy(p, sub / p.name)
    return d


@pytest.fixture(scope="session")
def small_photo_dir(tmp_path_factory: pytest.TempPathFactory, photos: list[Path]) -> Path:
    """120 small crops of the real photos (JPEG and PNG, 64-200 px), fast to load."""
    d = tmp_path_factory.mktemp("small")
    rng = np.random.default_rng(0)
    sources = [Image.open(p).convert("RGB") for p in photos]  # every photo is at least 240 px
    for i in range(120):
        src = sources[i % len(sources)]
        w, h = int(rng.integers(64, 200)), int(rng.integers(64, 200))
        x, y = int(rng.integers(0, src.width - w)), int(rng.integers(0, src.height - h))
        crop = src.crop((x, y, x + w, y + h))
        ext = "png" if i % 10 == 0 else "jpg"
        crop.save(d / f"{i:04d}.{ext}")
    return d


@pytest.fixture
def config() -> Callable[..., dict[str, Any]]:
    return file_config


@pytest.fixture(scope="session")
def s3_server() -> Any:
    """A real S3 server on 127.0.0.1 (moto_server, or $DATAGO_TEST_S3_ENDPOINT), for the session."""
    srv = S3Server()
    yield srv
    srv.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """:func:`s3_server` with the AWS_* environment pointing at it (for datago and the engine)."""
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(k, raising=False)
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    from datago.engine import objstore

    objstore.reset_clients()
    yield s3_server
    objstore.reset_clients()
