"""Shared fixtures: real photographs (Debian's mate-backgrounds) and the odd files around them."""

from __future__ import annotations

import shutil
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))

PHOTO_DIR = Path("/usr/share/backgrounds/mate/nature")


def real_photos() -> list[Path]:
    photos = sorted(PHOTO_DIR.glob("*.jpg"))
    if not photos:
        pytest.skip("mate-backgrounds is not installed (./build.sh installs it)")
    return photos


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    """The real photographs (JPEG, 1280-2560 px wide)."""
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
    sources = [Image.open(p).convert("RGB").reduce(4) for p in photos]
    for i in range(120):
        src = sources[i % len(sources)]
        w, h = int(rng.integers(64, 200)), int(rng.integers(64, 200))
        x, y = int(rng.integers(0, src.width - w)), int(rng.integers(0, src.height - h))
        crop = src.crop((x, y, x + w, y + h))
        ext = "png" if i % 10 == 0 else "jpg"
        crop.save(d / f"{i:04d}.{ext}")
    return d


def file_config(root: Path | str, **extra: Any) -> dict[str, Any]:
    """A datago config for the filesystem source with 256-px buckets."""
    image_config = {
        "crop_and_resize": True,
        "default_image_size": 256,
        "downsampling_ratio": 16,
        "min_aspect_ratio": 0.5,
        "max_aspect_ratio": 2.0,
    }
    image_config.update(extra.pop("image_config", {}))
    source_config = {"root_path": str(root)}
    source_config.update(extra.pop("source_config", {}))
    cfg: dict[str, Any] = {
        "source_type": "file",
        "source_config": source_config,
        "image_config": image_config,
        "samples_buffer_size": 8,
    }
    cfg.update(extra)
    return cfg


@pytest.fixture
def config() -> Callable[..., dict[str, Any]]:
    return file_config


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (a decompression-bomb shape) with one
    tiny IDAT: libvips can read its header, and decoding it would need width*height bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
