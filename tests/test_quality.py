"""Resize quality of the JPEG path against a float reference.

datago decodes a JPEG with libjpeg-turbo's IDCT scaling (M/8, the smallest M that still covers the
bucket), cuts the centre window and resamples it (Lanczos-3, fixed point) to the bucket. The
reference does none of those shortcuts: the full-size decode, in float, resized with a Lanczos-3
filter (Pillow's LANCZOS on mode "F" images, which widens the kernel when reducing) from the exact
centre-crop box to the bucket.

Measured (256 / 512-px buckets, 16 JPEGs): PSNR min 30.1 / 28.4 dB, mean 44.2 / 49.5 dB. A 40 dB
floor per photo does not hold for the DCT scaling itself (the power-of-two shrink of libvips had
the same: sand ripples of Dune 37.5 dB, the sharp-edged Elephants 30 dB; at M = 8 every photo is
above 56 dB), so the floors are on the mean per bucket size, with a per-photo floor that catches
gross errors. An IDCT scaling that overshoots (decodes below the bucket, then upsamples; 20% too
small already brings the means to 40.6 / 45.4 dB) fails.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

import datago
from photos_util import file_config, photo

MEAN_MIN = {256: 42.0, 512: 47.0}  # dB, peak 255, over every pixel and channel, mean over photos
PHOTO_MIN = 27.0  # dB, every photo

# committed photos (512-1024 px) and Debian's wallpapers (1600-4096 px): a missing file fails
LOCAL = (
    "Aqua.jpg",
    "Blinds.jpg",
    "Dune.jpg",
    "Fossa_by_Jasper_Roks.jpg",
    "FreshFlower.jpg",
    "GreenMeadow.jpg",
    "Kleiber_by_Lukas_Baubkus_portrait.jpg",
    "LadyBird.jpg",
    "Storm.jpg",
    "Wood.jpg",
)
BACKGROUNDS = Path("/usr/share/backgrounds")
SYSTEM = (
    "mate/nature/FreshFlower.jpg",
    "mate/nature/Dune.jpg",
    "mate/nature/Blinds.jpg",
    "mate/desktop/GreenTraditional.jpg",
    "mate/abstract/Elephants.jpg",
    "Fossa_by_Jasper_Roks.jpg",
)


def quality_photos() -> list[Path]:
    """The photos of this test; a missing one fails it (never skips)."""
    out = [photo(n) for n in LOCAL]
    for rel in SYSTEM:
        p = BACKGROUNDS / rel
        if not p.is_file():
            pytest.fail(f"{p} is missing: install mate-backgrounds and lomiri-wallpapers-20.04")
        out.append(p)
    return out


def jpeg_scale(w: int, h: int, tw: int, th: int) -> int:
    """The IDCT scaling M (of M/8) datago uses: the smallest that covers the bucket (restated)."""
    m = max(-(-8 * tw // w), -(-8 * th // h))
    return min(max(m, 1), 8)


def reference(path: Path, tw: int, th: int) -> np.ndarray:
    """Float Lanczos-3 cover resize of the full-size decode: th x tw x 3, float64 in [0, 255]."""
    src = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    w, h = src.size
    scale = max(tw / w, th / h)
    bw, bh = tw / scale, th / scale
    box = ((w - bw) / 2, (h - bh) / 2, (w + bw) / 2, (h + bh) / 2)
    planes = []
    for band in src.split():
        f = band.convert("F")
        planes.append(np.asarray(f.resize((tw, th), Image.Resampling.LANCZOS, box=box), dtype=np.float64))
    return np.clip(np.stack(planes, axis=-1), 0.0, 255.0)


def psnr(a: np.ndarray, ref: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - ref) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def quality_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The photos copied under unique names; maps each name to its original path."""
    d = tmp_path_factory.mktemp("quality")
    names = {}
    for i, p in enumerate(quality_photos()):
        name = f"{i:02d}_{p.name}"
        shutil.copy(p, d / name)
        names[name] = p
    return {"dir": d, **names}  # type: ignore[dict-item]


@pytest.mark.parametrize("size", [256, 512])
def test_jpeg_resize_psnr_against_float_lanczos(quality_dir: dict[str, Path], size: int) -> None:
    d = quality_dir["dir"]
    cfg = file_config(d, image_config={"default_image_size": size})
    with datago.DatagoClient(cfg) as client:
        samples = list(client)
    assert len(samples) == len(quality_dir) - 1
    scores, scales = [], []
    for s in samples:
        arr = s.image_array
        th, tw = arr.shape[:2]
        ref = reference(quality_dir[s.id], tw, th)
        score = psnr(arr, ref)
        scores.append(score)
        scales.append(jpeg_scale(s.original_width, s.original_height, tw, th))
        assert score >= PHOTO_MIN, f"{s.id} at {tw}x{th}: PSNR {score:.2f} dB < {PHOTO_MIN} (M={scales[-1]})"
    mean = float(np.mean(scores))
    print(f"size {size}: PSNR min {min(scores):.2f} mean {mean:.2f} dB, M = {sorted(scales)}")
    assert mean >= MEAN_MIN[size], f"mean PSNR {mean:.2f} dB < {MEAN_MIN[size]} at {size} px: {scores}"
    # the photos exercise IDCT scalings that are not powers of two (which libvips cannot do)
    assert {m for m in scales if m not in (1, 2, 4, 8)}, f"only power-of-two scalings: {scales}"
