#!/usr/bin/env python3
"""Writes the committed seed corpora of the Go fuzz targets (testdata/fuzz/<FuzzName>/).

Run from the repository root: ``python3 scripts/fuzz_seeds.py``. Deterministic: the images are
tiny (at most 64 px) crops of the real photos in tests/data/photos, saved by Pillow; the other
seeds are literal. Each seed is written in ``go test``'s corpus format ("go test fuzz v1", one Go
literal per argument of the target). Existing seeds of the same name are overwritten; crashers
that ``go test -fuzz`` adds (hash-named files) are left alone.

Raises FileNotFoundError when a photo is missing (they are committed in the repository).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "tests" / "data" / "photos"


def go_quote(data: bytes) -> str:
    """A Go string literal of data: printable ASCII as is, everything else as \\xNN."""
    out = ['"']
    for b in data:
        if b == 0x22:
            out.append('\\"')
        elif b == 0x5C:
            out.append("\\\\")
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    out.append('"')
    return "".join(out)


def write_seed(pkg: str, target: str, name: str, *args: bytes | str | tuple[str, int]) -> None:
    """Writes one seed: bytes become []byte, str become string, (type, n) an integer of that type."""
    lines = ["go test fuzz v1"]
    for a in args:
        if isinstance(a, bytes):
            lines.append(f"[]byte({go_quote(a)})")
        elif isinstance(a, str):
            lines.append(f"string({go_quote(a.encode())})")
        else:
            lines.append(f"{a[0]}({a[1]})")
    d = ROOT / "go" / pkg / "testdata" / "fuzz" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text("\n".join(lines) + "\n")


def photo(name: str, w: int, h: int, mode: str = "RGB") -> Image.Image:
    """The centre of a real photo, resized to w x h, in the given Pillow mode."""
    with Image.open(PHOTOS / name) as im:
        im.load()
        return im.convert("RGB").resize((w, h), Image.Resampling.LANCZOS).convert(mode)


def encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def with_alpha(im: Image.Image, mode: str) -> Image.Image:
    """im with a diagonal alpha ramp (mode RGBA or LA)."""
    w, h = im.size
    alpha = Image.linear_gradient("L").resize((w, h)).rotate(45)
    out = im.convert(mode)
    out.putalpha(alpha)
    return out


def jpeg_seeds() -> None:
    base = encode(photo("Aqua.jpg", 40, 28), "JPEG", quality=50)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    seeds = {
        "baseline_420": (base, 0),
        "grey_odd": (encode(photo("Dune.jpg", 27, 41, "L"), "JPEG", quality=50), 1),
        "progressive_portrait": (
            encode(photo("Kleiber_by_Lukas_Baubkus_portrait.jpg", 24, 40), "JPEG", quality=40, progressive=True),
            2 | 4,
        ),
        "444_padded": (encode(photo("FreshFlower.jpg", 33, 25), "JPEG", quality=40, subsampling=0), 16),
        "422_restart": (
            encode(photo("Wood.jpg", 48, 16), "JPEG", quality=40, subsampling=1, restart_marker_blocks=2),
            1,
        ),
        "exif_rotated": (encode(photo("GreenMeadow.jpg", 36, 24), "JPEG", quality=40, exif=exif), 0),
        "cmyk": (encode(photo("Storm.jpg", 16, 16, "CMYK"), "JPEG", quality=40), 0),
        "truncated": (base[: len(base) * 2 // 3], 0),
        "header_only": (base[:300], 2),
    }
    for name, (data, mode) in seeds.items():
        write_seed("transform", "FuzzJPEG", name, data, ("uint8", mode))


def png_seeds() -> None:
    rgb = encode(photo("Infinite-Sea_by_Aury88.png", 20, 14), "PNG", optimize=True)
    broken = bytearray(rgb)
    idat = rgb.index(b"IDAT")
    broken[idat + 20] ^= 0x5A  # the zlib stream and the chunk's CRC no longer agree
    seeds = {
        "rgb": (rgb, 0),
        "grey_portrait": (encode(photo("YellowFlower_portrait.png", 17, 29, "L"), "PNG"), 1),
        "rgba_flatten": (encode(with_alpha(photo("LadyBird.jpg", 16, 16), "RGBA"), "PNG"), 8),
        "rgba_to_rgb8": (encode(with_alpha(photo("Blinds.jpg", 12, 20), "RGBA"), "PNG"), 4 | 16),
        "grey_alpha": (encode(with_alpha(photo("Fossa_by_Jasper_Roks.jpg", 22, 12, "L"), "LA"), "PNG"), 8),
        "palette": (encode(photo("Aqua.jpg", 24, 16).quantize(16), "PNG"), 2),
        "grey16": (encode(photo("Dune.jpg", 10, 10, "L").convert("I;16"), "PNG"), 0),
        "crc_broken": (bytes(broken), 0),
        "truncated": (rgb[: len(rgb) // 2], 0),
    }
    for name, (data, mode) in seeds.items():
        write_seed("transform", "FuzzPNG", name, data, ("uint8", mode))


def tar_bytes(entries: list[tuple[str, bytes]]) -> bytes:
    """A ustar archive of regular files, without the end-of-archive blocks (reads as a clean end)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tf.addfile(info, io.BytesIO(data))
    end = 0
    for _name, data in entries:
        end += 512 + (len(data) + 511) // 512 * 512
    return buf.getvalue()[:end]


def source_seeds() -> None:
    two = tar_bytes([("k0.jpg", b"JPEG"), ("k0.json", b'{"a": 1}')])
    for name, data in {
        "two_entries": two,
        "cut_in_entry": two[:1030],
        "html_page": b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head></html>\n",
        "empty": b"",
    }.items():
        write_seed("source", "FuzzWebDatasetShard", name, data)

    full = "\n".join(
        [
            "a/k0.jpg=JPEG0",
            'a/k0.json={"caption": "x <y>", "n": 1.5, "tags": ["a"]}',
            "a/k0.txt=hello",
            "a/k0.cls= 2",
            "a/k0.mask.png=M",
            "a/k0.latent.npy=N",
            "a/k1.jpg=J1",
            "a/k1.png=P1",
            "a/k1.extra.json=[1, 2]",
        ]
    )
    for name, (spec, cut) in {
        "full_samples": (full, 0),
        "full_cut": (full, 700),
        "types": ("d/\n./k.jpg=1\n@k.png=k.jpg\n._x.jpg=2\nREADME=3\nk.txt=t\nk.=4", 0),
        "skips": ("s.json={bad\ns.jpg=1\nt.png=only png\nu.jpg=" + "x" * 80 + "\nv.JPG=upper\nv.cls=nan", 0),
        "key_returns": ("a.jpg=1\nb.jpg=2\na.txt=3\na.jpg=4", 0),
    }.items():
        write_seed("source", "FuzzWebDatasetTar", name, spec, ("uint16", cut))

    for i, pattern in enumerate(
        [
            "shards/train-{000000..000003}.tar",
            "{a,b,c}/{0..2}.tar",
            "http://h/x-{8..11}.tar",
            "x{+1..+3}y",
            "{007..9}",
            "{1..1}{,}",
            "{}",
            "a{b",
            "a}b",
            "{a,{b}}",
            "{10..2}",
            "{0..4000}{a,b}",
        ]
    ):
        write_seed("source", "FuzzExpandBraces", f"pattern_{i:02d}", pattern)

    row = {
        "id": "r1",
        "source": "s",
        "attributes": {"a": 1, "b": [1, 2], "c": {"d": None}},
        "image_direct_url": "http://127.0.0.1:1/f/1.jpg",
        "latents": [
            {"latent_type": "masked_image", "file_direct_url": "https://h/m.png", "is_mask": False},
            {"latent_type": "mask", "file_direct_url": "/rel/mask.png", "is_mask": True},
            {"latent_type": "latent_vae", "file_direct_url": "x.npy"},
        ],
        "tags": "a, b,,c",
        "coca_embedding": {"vector": [0.5, -1]},
        "duplicate_state": 2,
    }
    odd = [
        {"id": 7, "image_direct_url": "relative/x.jpg", "tags": ["x", None, " "], "duplicate_state": 1.5e3},
        {"id": None},
        {"id": "n", "image_direct_url": " "},
        5,
        {"id": "l", "image_direct_url": "http://h/i.jpg", "latents": [{"latent_type": "latent_x"}]},
        {"id": "q", "image_direct_url": "ftp://h/i.jpg", "attributes": "text"},
    ]
    for name, body in {
        "page": json.dumps({"next": None, "results": [row]}),
        "odd_rows": json.dumps({"next": "?cursor=2", "results": odd}),
        "html": "<html>502 Bad Gateway</html>",
        "no_results": '{"count": 0}',
        "null_results": '{"results": null, "next": "ftp://x"}',
        "results_object": '{"results": {"id": 1}}',
    }.items():
        write_seed("source", "FuzzDBPage", name, body.encode())


def config_seeds() -> None:
    for name, cfg in {
        "datago": {
            "source_type": "file",
            "source_config": {"root_path": "/x"},
            "limit": 10,
            "num_threads": 2,
            "image_config": {"crop_and_resize": True, "default_image_size": 512, "encode_format": "jpeg"},
        },
        "wds_batch": {
            "source_type": "wds",
            "source_config": {"url": "x-{0..3}.tar", "random_order": True},
            "batch_size": 4,
            "image_layout": "chw",
            "batch_mode": "l",
            "image_config": {"crop_and_resize": True, "max_pixels": 1000},
        },
        "db_http": {
            "source_config": {"sources": "photos", "random_order": True, "random_sampling": True},
            "rank": 1,
            "world_size": 2,
            "http_min_throughput": 0,
            "http_max_retries": 0,
            "s3": {"endpoint": "http://x"},
        },
        "bad_limit": {"limit": -1},
        "aliases_disagree": {"source_config": {"random_order": True, "random_sampling": False}},
        "unknown_key": {"source_type": "file", "image_config": {"sizee": 1}},
    }.items():
        write_seed("config", "FuzzConfigParse", name, json.dumps(cfg).encode())
    for name, text in {"empty_object": b"{}", "null": b"null", "not_json": b"{source_type: file"}.items():
        write_seed("config", "FuzzConfigParse", name, text)


if __name__ == "__main__":
    jpeg_seeds()
    png_seeds()
    source_seeds()
    config_seeds()
