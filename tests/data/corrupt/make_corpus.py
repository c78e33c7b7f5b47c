"""Writes the corrupt-file corpus (tests/data/corrupt/) and its manifest.json from one committed
photograph, tests/data/photos/Storm.jpg (see tests/data/photos/LICENSE.md).

Every damage is deterministic: fixed offsets, or positions drawn from random.Random with a fixed
seed (never the OS's entropy), so running this again with the same Pillow (and its libjpeg / zlib) writes the
same bytes. The committed files are what the tests read; this script documents how they were made.

Bases, small enough for a few KB each:
- ``tall``: 96x288 (1:3), narrower than every bucket (aspect >= 0.5), so every crop keeps the
  centre rows only and the rows below the window are the last sixth of the file;
- ``wide``: 480x270, larger than a 256-px bucket, so the JPEG window read scales by M/8 (M < 8).

manifest.json: per file, what was done to it and the expected verdict under each
``image_config.fail_on`` — ``"ok"`` (delivered) or the skip reason (``stats()['skipped_reasons']``)
— which must hold for every crop setting (none, 256, 512).

Usage: python3 tests/data/corrupt/make_corpus.py
"""

from __future__ import annotations

import io
import json
import random
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "photos" / "Storm.jpg"

OK = {"warning": "ok", "error": "ok", "none": "ok"}
WARNING = {"warning": "corrupt_data", "error": "ok", "none": "ok"}  # a warning about the data
ERROR = {"warning": "corrupt_data", "error": "corrupt_data", "none": "ok"}  # an error (truncation...)
ALWAYS = {"warning": "corrupt_data", "error": "corrupt_data", "none": "corrupt_data"}
HEADER = {"warning": "decode_error", "error": "decode_error", "none": "decode_error"}


def base_image(w: int, h: int) -> Image.Image:
    """The centre of the source photo at the aspect ratio w:h, resized to w x h (RGB)."""
    im = Image.open(SOURCE).convert("RGB")
    sw, sh = im.size
    cw, ch = (sw, sw * h // w) if sw * h // w <= sh else (sh * w // h, sh)
    x0, y0 = (sw - cw) // 2, (sh - ch) // 2
    return im.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.Resampling.LANCZOS)


def jpeg_bytes(im: Image.Image, quality: int, progressive: bool = False) -> bytes:
    """Baseline (or progressive) 4:2:0 JPEG without restart markers."""
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality, progressive=progressive, optimize=False, subsampling=2)
    return buf.getvalue()


def chunk(ctype: bytes, data: bytes, crc: int | None = None) -> bytes:
    """One PNG chunk; crc overrides the right CRC-32."""
    c = zlib.crc32(ctype + data) if crc is None else crc
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", c & 0xFFFFFFFF)


def png_bytes(
    im: Image.Image,
    *,
    rows: Callable[[bytes], bytes] | None = None,
    idat_size: int = 1024,
    layout: Callable[[list[bytes]], list[bytes]] | None = None,
) -> bytes:
    """8-bit RGB PNG, filter Sub on every row, IDAT split into idat_size-byte chunks. rows may alter
    the filtered rows before compression; layout may alter the list of chunks (IHDR ... IEND)."""
    w, h = im.size
    px = im.tobytes()
    raw = bytearray()
    for y in range(h):
        row = px[y * w * 3 : (y + 1) * w * 3]
        raw.append(1)  # Sub
        raw += bytes((row[i] - (row[i - 3] if i >= 3 else 0)) & 0xFF for i in range(len(row)))
    data = bytes(raw) if rows is None else rows(bytes(raw))
    z = zlib.compress(data, 9)
    chunks = [chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))]
    chunks += [chunk(b"IDAT", z[i : i + idat_size]) for i in range(0, len(z), idat_size)]
    chunks.append(chunk(b"IEND", b""))
    if layout is not None:
        chunks = layout(chunks)
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def scan_range(jpeg: bytes) -> tuple[int, int]:
    """Offsets of the entropy-coded data: after the SOS header, up to the EOI marker."""
    sos = jpeg.index(b"\xff\xda")
    start = sos + 2 + struct.unpack(">H", jpeg[sos + 2 : sos + 4])[0]
    return start, len(jpeg) - 2


def flip(data: bytes, lo: float, hi: float, n: int, seed: int) -> bytes:
    """XORs n bytes of the entropy data (a JPEG) between fractions lo and hi of it with 0x5a,
    at positions drawn with a seeded generator, never making a 0xFF (a marker)."""
    b = bytearray(data)
    s, e = scan_range(data)
    rng = random.Random(seed)
    for _ in range(n):
        p = rng.randrange(s + int((e - s) * lo), s + int((e - s) * hi))
        v = b[p] ^ 0x5A
        b[p] = v if v != 0xFF and b[p] != 0xFF else b[p]
    return bytes(b)


def marker(data: bytes, at: float) -> bytes:
    """Overwrites 2 bytes of the entropy data (a JPEG), at fraction `at` of it, with an RST5
    marker that does not belong there (no restart interval): libjpeg warns."""
    s, e = scan_range(data)
    p = s + int((e - s) * at)
    return data[:p] + b"\xff\xd5" + data[p + 2 :]


def with_crc(chunks: list[bytes], i: int, delta: int = 1) -> list[bytes]:
    """Chunk i with its CRC off by delta."""
    c = chunks[i]
    crc = struct.unpack(">I", c[-4:])[0]
    return [*chunks[:i], c[:-4] + struct.pack(">I", (crc + delta) & 0xFFFFFFFF), *chunks[i + 1 :]]


def main() -> None:
    """Writes the corpus and manifest.json next to this script."""
    tall, wide = base_image(96, 288), base_image(480, 270)
    jt, jw = jpeg_bytes(tall, 75), jpeg_bytes(wide, 40)
    jp = jpeg_bytes(wide, 40, progressive=True)
    pt = png_bytes(base_image(64, 192))
    ptall = base_image(64, 192)
    files: dict[str, tuple[bytes, dict[str, str], str]] = {}

    def add(name: str, data: bytes, verdict: dict[str, str], what: str) -> None:
        files[name] = (data, verdict, what)

    add("jpeg_ok_tall.jpg", jt, OK, "clean baseline JPEG, 96x288")
    add("jpeg_ok_wide.jpg", jw, OK, "clean baseline JPEG, 480x270")
    add("jpeg_ok_progressive.jpg", jp, OK, "clean progressive JPEG, 480x270")
    add(
        "jpeg_entropy_mid_tall.jpg",
        flip(jt, 0.4, 0.6, 6, seed=1),
        WARNING,
        "6 entropy bytes XORed in the middle of the scan (inside every crop window)",
    )
    add(
        "jpeg_entropy_bottom_tall.jpg",
        flip(jt, 0.93, 0.99, 4, seed=2),
        OK,
        "4 entropy bytes XORed in the last rows: libjpeg decodes them without a warning (silent)",
    )
    add(
        "jpeg_marker_bottom_tall.jpg",
        marker(jt, 0.95),
        WARNING,
        "a stray RST5 marker in the entropy data of the last rows (below every crop window)",
    )
    add(
        "jpeg_entropy_wide.jpg",
        flip(jw, 0.3, 0.7, 8, seed=3),
        WARNING,
        "8 entropy bytes XORed across the middle of the scan (scaled window read at 256 px)",
    )
    add(
        "jpeg_entropy_progressive.jpg",
        flip(jp, 0.5, 0.9, 6, seed=4),
        WARNING,
        "6 entropy bytes XORed in the later scans of a progressive JPEG",
    )
    add(
        "jpeg_trunc97_tall.jpg",
        jt[: len(jt) * 97 // 100],
        ERROR,
        "cut at 97% (the missing rows are below every crop window)",
    )
    add("jpeg_trunc97_wide.jpg", jw[: len(jw) * 97 // 100], ERROR, "cut at 97%")
    add("jpeg_trunc50_wide.jpg", jw[: len(jw) // 2], ERROR, "cut in half")
    sos = jt.index(b"\xff\xda")
    add("jpeg_header_only.jpg", jt[: sos + 2], HEADER, "headers only, cut at the start of scan marker")

    add("png_ok_tall.png", pt, OK, "clean 8-bit RGB PNG, 64x192, IDAT in 1 KB chunks")
    add(
        "png_idat_crc_last.png",
        png_bytes(ptall, layout=lambda c: with_crc(c, len(c) - 2)),
        ERROR,
        "CRC of the last IDAT chunk off by one (the rows below every crop window)",
    )
    add(
        "png_idat_crc_first.png",
        png_bytes(ptall, layout=lambda c: with_crc(c, 1)),
        ERROR,
        "CRC of the first IDAT chunk off by one",
    )
    add(
        "png_idat_split.png",
        png_bytes(ptall, layout=lambda c: [*c[:3], chunk(b"tEXt", b"Comment\x00split"), *c[3:]]),
        ERROR,
        "a tEXt chunk between the second and third IDAT chunks",
    )
    add(
        "png_text_crc.png",
        png_bytes(ptall, layout=lambda c: [*c[:1], chunk(b"tEXt", b"Comment\x00bad crc", 12345), *c[1:]]),
        WARNING,
        "a tEXt chunk with a wrong CRC before the image data (libpng: a warning)",
    )
    add(
        "png_iend_crc.png", png_bytes(ptall, layout=lambda c: with_crc(c, len(c) - 1)), WARNING, "IEND with a wrong CRC"
    )
    add("png_no_iend.png", png_bytes(ptall, layout=lambda c: c[:-1]), WARNING, "no IEND chunk")
    add("png_trunc97.png", pt[: len(pt) * 97 // 100], ERROR, "cut at 97% (inside the last IDAT chunk)")

    def zlib_damage(chunks: list[bytes]) -> list[bytes]:
        """XORs 8 bytes in the middle of the deflate stream, CRCs recomputed (only zlib sees it)."""
        idat = b"".join(c[8:-4] for c in chunks if c[4:8] == b"IDAT")
        rng = random.Random(5)
        b = bytearray(idat)
        for _ in range(8):
            p = rng.randrange(len(b) // 3, 2 * len(b) // 3)
            b[p] ^= 0xA5
        return [chunks[0], chunk(b"IDAT", bytes(b)), chunks[-1]]

    add(
        "png_zlib_corrupt.png",
        png_bytes(ptall, layout=zlib_damage),
        ERROR,
        "8 bytes of the deflate stream XORed, CRCs right",
    )

    def bad_filter(raw: bytes) -> bytes:
        pitch = 64 * 3 + 1
        b = bytearray(raw)
        b[pitch * 180] = 7  # row 180 of 192: below every crop window
        return bytes(b)

    add(
        "png_bad_filter.png",
        png_bytes(ptall, rows=bad_filter),
        ERROR,
        "filter type 7 on row 180 (below every crop window), stream and CRCs right",
    )

    def adler(chunks: list[bytes]) -> list[bytes]:
        idat = bytearray(b"".join(c[8:-4] for c in chunks if c[4:8] == b"IDAT"))
        idat[-1] ^= 1
        return [chunks[0], chunk(b"IDAT", bytes(idat)), chunks[-1]]

    add(
        "png_adler.png",
        png_bytes(ptall, layout=adler),
        OK,
        "Adler-32 of the zlib stream wrong, CRCs right (libpng does not check it)",
    )

    manifest = {
        "source": "tests/data/photos/Storm.jpg",
        "generator": "tests/data/corrupt/make_corpus.py",
        "verdicts": "per fail_on: ok (delivered) or the skip reason, the same for crop none, 256 and 512",
        "files": {},
    }
    for old in HERE.glob("*.jpg"):
        old.unlink()
    for old in HERE.glob("*.png"):
        old.unlink()
    for name, (data, verdict, what) in sorted(files.items()):
        (HERE / name).write_bytes(data)
        manifest["files"][name] = {"what": what, "bytes": len(data), "verdict": verdict}
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
