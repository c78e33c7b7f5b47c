"""Test helpers shared by the suites: real photographs and datago configs (not a conftest, so that
nested conftest.py files cannot shadow it)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

PHOTO_DIR = Path(__file__).resolve().parent / "data" / "photos"
# the committed test photographs (see data/photos/LICENSE.md): RGB, landscape, square and portrait
PHOTO_NAMES = (
    "Aqua.jpg",
    "Blinds.jpg",
    "Dune.jpg",
    "Fossa_by_Jasper_Roks.jpg",
    "FreshFlower.jpg",
    "GreenMeadow.jpg",
    "Infinite-Sea_by_Aury88.png",
    "Kleiber_by_Lukas_Baubkus_portrait.jpg",
    "LadyBird.jpg",
    "Storm.jpg",
    "Wood.jpg",
    "YellowFlower_portrait.png",
)
PHOTO_SUFFIXES = (".jpg", ".png")


def photo(name: str) -> Path:
    """One committed test photograph by file name; a missing file fails the test (never skips)."""
    path = PHOTO_DIR / name
    if not path.is_file():
        pytest.fail(f"test photo {path} is missing: it is committed in the repository (tests/data/photos)")
    return path


def real_photos() -> list[Path]:
    """The committed real photographs, sorted by name (JPEG and PNG, RGB, 240-1024 px wide,
    landscape, square and portrait; see tests/data/photos/LICENSE.md). A missing one fails the
    test."""
    return [photo(n) for n in PHOTO_NAMES]


def image_files(root: Path) -> list[Path]:
    """Every .jpg and .png under root (the photo folders the tests build), sorted."""
    return sorted(p for p in root.rglob("*") if p.suffix in PHOTO_SUFFIXES)


def loader_config(source_type: str, source: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A datago config for any source with 256-px buckets: ``source`` is the source_config;
    ``image_config`` and ``source_config`` in ``extra`` are merged into the defaults, other keys
    are set at the top level."""
    image_config = {
        "crop_and_resize": True,
        "default_image_size": 256,
        "downsampling_ratio": 16,
        "min_aspect_ratio": 0.5,
        "max_aspect_ratio": 2.0,
    }
    image_config.update(extra.pop("image_config", {}))
    source_config = {**source, **extra.pop("source_config", {})}
    cfg: dict[str, Any] = {
        "source_type": source_type,
        "source_config": source_config,
        "image_config": image_config,
        "samples_buffer_size": 8,
    }
    cfg.update(extra)
    return cfg


def file_config(root: Path | str, **extra: Any) -> dict[str, Any]:
    """A datago config for the filesystem source with 256-px buckets."""
    return loader_config("file", {"root_path": str(root)}, **extra)


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (a decompression-bomb shape) with one
    tiny IDAT: libvips can read its header, and decoding it would need width*height bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
