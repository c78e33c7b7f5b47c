"""datago's demo: real photographs through the Go core into Python.

Builds (or reuses) the demo dataset of ``demo_data.py``, streams it through a
:class:`datago.DatagoClient` with aspect-ratio buckets, prints the throughput, the skipped and
per-stage counters and the bucket histogram, and writes a contact sheet of loaded samples (each
captioned with its bucket) to ``OUT/contact_sheet.png``. Run by ``./build.sh demo``::

    python benchmarks/demo.py [--data ./demo_data] [-n 2000] [--style web|easy] [--size 512] [--out demo_out]
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

import datago
from demo_data import DEFAULT_STYLE, STYLES, build_dataset, format_stats, is_complete, read_marker

SHEET_COLUMNS = 8
SHEET_CELL = 192  # thumbnail box, pixels
SHEET_CAPTION = 34  # caption band under each thumbnail, pixels
MAX_ROTATED_ON_SHEET = 8  # EXIF-rotated files shown on the sheet, to check they come out upright


def client_config(root: Path, size: int) -> dict[str, Any]:
    """datago config: the folder in sorted order, crop-and-resize to size-px buckets."""
    return {
        "source_type": "file",
        "source_config": {"root_path": str(root), "random_sampling": False},
        "image_config": {
            "crop_and_resize": True,
            "default_image_size": size,
            "downsampling_ratio": 16,
            "min_aspect_ratio": 0.5,
            "max_aspect_ratio": 2.0,
        },
        "limit": 0,
        "samples_buffer_size": 64,
    }


def load(
    root: Path, size: int, n_sheet: int, rotated: set[str], expected: int
) -> tuple[int, float, dict[str, Any], collections.Counter[tuple[int, int]], list[datago.Sample]]:
    """Stream the folder through datago.

    Returns:
        (samples, seconds, client.stats(), bucket histogram {(W, H): count}, samples kept for the
        contact sheet: up to MAX_ROTATED_ON_SHEET EXIF-rotated ones, the rest evenly spaced).
    """
    step = max(1, expected // max(1, n_sheet - MAX_ROTATED_ON_SHEET))
    hist: collections.Counter[tuple[int, int]] = collections.Counter()
    kept_rotated: list[datago.Sample] = []
    kept_other: list[datago.Sample] = []
    count = 0
    t0 = time.perf_counter()
    with datago.DatagoClient(client_config(root, size)) as client:
        for sample in client:
            arr = sample.image_array  # the (H, W, C) uint8 view a training loop would use
            if arr is not None:
                hist[(arr.shape[1], arr.shape[0])] += 1
            if sample.id in rotated and len(kept_rotated) < MAX_ROTATED_ON_SHEET:
                kept_rotated.append(sample)
            elif count % step == 0:
                kept_other.append(sample)
            count += 1
        seconds = time.perf_counter() - t0
        stats = client.stats()
    kept = (kept_rotated + kept_other)[:n_sheet]
    kept.sort(key=lambda s: s.id)
    return count, seconds, stats, hist, kept


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    """text, shortened with an ellipsis in the middle until it fits in width pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    keep = len(text)
    while keep > 4:
        keep -= 1
        head, tail = text[: keep // 2], text[len(text) - (keep - keep // 2) :]
        short = f"{head}…{tail}"
        if draw.textlength(short, font=font) <= width:
            return short
    return text[:4]


def contact_sheet(samples: list[datago.Sample], rotated: set[str], path: Path) -> Path:
    """Write a grid of thumbnails, each captioned with its bucket (and id), to path."""
    cols = min(SHEET_COLUMNS, max(1, len(samples)))
    rows = max(1, -(-len(samples) // cols))
    pad = 6
    cell_w, cell_h = SHEET_CELL + pad, SHEET_CELL + SHEET_CAPTION + pad
    sheet = Image.new("RGB", (cols * cell_w + pad, rows * cell_h + pad), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    big, small = _font(14), _font(11)
    for i, sample in enumerate(samples):
        im = sample.image
        if im is None:
            continue
        bucket = f"{im.width}x{im.height}"
        thumb = im.convert("RGB")  # a copy: the sample's C buffer is only read
        thumb.thumbnail((SHEET_CELL, SHEET_CELL), Image.Resampling.BILINEAR)
        x0 = pad + (i % cols) * cell_w
        y0 = pad + (i // cols) * cell_h
        sheet.paste(thumb, (x0 + (SHEET_CELL - thumb.width) // 2, y0 + SHEET_CELL - thumb.height))
        label = bucket + ("  (EXIF-rotated)" if sample.id in rotated else "")
        draw.text((x0, y0 + SHEET_CELL + 3), label, fill=(255, 255, 255), font=big)
        name = _fit(draw, sample.id, small, SHEET_CELL)
        draw.text((x0, y0 + SHEET_CELL + 19), name, fill=(170, 170, 170), font=small)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def print_report(
    count: int, seconds: float, stats: dict[str, Any], hist: collections.Counter[tuple[int, int]]
) -> None:
    """Throughput, skipped counts, per-stage counters and the bucket histogram."""
    mb = stats.get("bytes_read", 0) / 1e6
    print(f"\nloaded {count} samples in {seconds:.2f} s")
    print(f"  throughput: {count / seconds:8.1f} images/s   {mb / seconds:8.1f} MB/s read")
    skipped = stats.get("samples_skipped", 0)
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(stats.get("skipped_reasons", {}).items()))
    print(f"  skipped:    {skipped}" + (f" ({reasons})" if reasons else ""))
    print(
        f"  core:       {stats.get('samples_produced', 0)} produced, {mb:.0f} MB read, "
        f"{stats.get('elapsed_seconds', 0.0):.2f} s elapsed"
    )
    print("\nstages (busy seconds are summed over the stage's workers)")
    print(f"  {'stage':<10}{'in':>8}{'out':>8}{'busy s':>10}{'ms/item':>10}")
    for st in stats.get("stages", []):
        per = 1000 * st["busy_seconds"] / st["items_out"] if st["items_out"] else 0.0
        counts = f"{st['name']:<10}{st['items_in']:>8}{st['items_out']:>8}"
        print(f"  {counts}{st['busy_seconds']:>10.2f}{per:>10.2f}")
    print("\nbuckets (W x H: count), by aspect ratio")
    peak = max(hist.values(), default=1)
    for (w, h), c in sorted(hist.items(), key=lambda kv: kv[0][0] / kv[0][1]):
        bar = "#" * max(1, round(40 * c / peak))
        print(f"  {w:>5} x {h:<5} {c:>5}  {bar}")


def main(argv: list[str] | None = None) -> int:
    """Build the data, load it through datago, report, and write the contact sheet."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("demo_data"), help="dataset folder")
    parser.add_argument("-n", type=int, default=2000, help="images in the dataset")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    parser.add_argument("--style", choices=STYLES, default=DEFAULT_STYLE, help="dataset style (web or easy)")
    parser.add_argument("--size", type=int, default=512, help="bucket size (multiple of 16)")
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    parser.add_argument("--sheet", type=int, default=48, help="thumbnails on the contact sheet")
    args = parser.parse_args(argv)

    print(f"datago {datago.version()}")
    reused = is_complete(args.data, args.n, args.seed, args.style)
    t0 = time.perf_counter()
    build_dataset(args.data, args.n, args.seed, args.style)
    marker = read_marker(args.data)
    how = "reused" if reused else f"built in {time.perf_counter() - t0:.1f} s"
    print(f"dataset {args.data} ({args.style}): {args.n} images, {marker.get('bytes', 0) / 1e6:.0f} MB ({how})")
    print(f"  {format_stats(marker['stats'])}")
    rotated = set(marker.get("rotated", []))

    count, seconds, stats, hist, kept = load(args.data, args.size, args.sheet, rotated, args.n)
    print_report(count, seconds, stats, hist)
    sheet = contact_sheet(kept, rotated, args.out / "contact_sheet.png")
    print(f"\ncontact sheet: {sheet} ({len(kept)} samples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
