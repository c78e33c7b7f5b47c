"""JPEG IDCT scaling at any M/8 against libvips' power-of-two shrink: speed and pixels.

Runs two builds of the Go CLI (cmd/datago-bench), e.g. main's and this branch's, alternately on
the same folder (1 worker by default) and prints images/s per run and the median of each; then,
for every JPEG of the folder, the pixels that go into the resampler (the decoded crop window)
with the power-of-two shrink (libvips' sizes: floor(w/s)) and with the smallest covering M/8
(libjpeg's sizes: ceil(w*M/8)), restated from go/transform; and how many JPEGs our decoder hands
to libvips (CMYK/YCCK), which then take the power-of-two shrink and resample the rest.

    python3 benchmarks/demo_data.py -n 300 /tmp/scale_data
    (cd /work/main && go build -o /tmp/dgb_main ./cmd/datago-bench)
    go build -o /tmp/dgb_new ./cmd/datago-bench
    python3 benchmarks/bench_scale.py /tmp/scale_data --before /tmp/dgb_main --after /tmp/dgb_new
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import subprocess
from pathlib import Path

from PIL import Image, ImageOps


def buckets(size: int, ratio: int = 16, lo: float = 0.5, hi: float = 2.0) -> list[tuple[int, int]]:
    """The aspect-ratio buckets (go/transform/bucket.go, restated)."""
    p = size // ratio
    area = p * p
    out = set()
    for pw in range(math.ceil(math.sqrt(area * lo)), math.floor(math.sqrt(area * hi)) + 1):
        out.add((pw * ratio, area // pw * ratio))
    for ph in range(math.ceil(math.sqrt(area / hi)), math.floor(math.sqrt(area / lo)) + 1):
        out.add((area // ph * ratio, ph * ratio))
    return sorted((b for b in out if lo <= b[0] / b[1] <= hi), key=lambda b: b[0] / b[1])


def nearest(w: int, h: int, bs: list[tuple[int, int]]) -> tuple[int, int]:
    ar = w / h
    return min(bs, key=lambda b: (abs(b[0] / b[1] - ar), -b[0] / b[1]))


def jpeg_scale(w: int, h: int, tw: int, th: int) -> int:
    return min(max(-(-8 * tw // w), -(-8 * th // h), 1), 8)


def window(sw: int, sh: int, tw: int, th: int) -> int:
    """Pixels of the centre crop window of an sw x sh image for a tw x th target."""
    s = max(tw / sw, th / sh)
    cw = min(sw, max(1, math.floor(tw / s + 0.5)))
    ch = min(sh, max(1, math.floor(th / s + 0.5)))
    return cw * ch


def run(binary: str, root: str, workers: int, size: int) -> float:
    out = subprocess.run(
        [binary, "-root", root, "-workers", str(workers), "-size", str(size)],
        capture_output=True, text=True, check=True,
    ).stdout
    m = re.search(r"([\d.]+) images/s", out)
    if m is None:
        raise RuntimeError(f"no images/s in the output of {binary}: {out[:200]}")
    return float(m.group(1))


def pixels(root: Path, size: int) -> None:
    bs = buckets(size)
    old = new = n = declined = 0
    ms: dict[int, int] = {}
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() not in (".jpg", ".jpeg"):
            continue
        im = Image.open(p)
        n += 1
        w, h = im.size  # stored frame
        ow, oh = ImageOps.exif_transpose(im).size if im.getexif().get(0x0112, 1) >= 5 else (w, h)
        tw, th = nearest(ow, oh, bs)
        if (ow, oh) != (w, h):
            tw, th = th, tw
        m = jpeg_scale(w, h, tw, th)
        s = 1
        while s < 8 and 2 * s * m <= 8:
            s *= 2
        old += window(w // s, h // s, tw, th)
        if im.mode == "CMYK":
            declined += 1
            new += window(w // s, h // s, tw, th)
        else:
            ms[m] = ms.get(m, 0) + 1
            new += window(-(-w * m // 8), -(-h * m // 8), tw, th)
    print(f"size {size}: {n} JPEGs, pixels into the resampler: power-of-two shrink {old / 1e6:.1f} M, "
          f"M/8 {new / 1e6:.1f} M ({new / old:.2f}x); M histogram {dict(sorted(ms.items()))}; "
          f"declined to libvips (CMYK): {declined}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", help="folder of images (benchmarks/demo_data.py)")
    ap.add_argument("--before", required=True, help="datago-bench binary before (e.g. main)")
    ap.add_argument("--after", required=True, help="datago-bench binary after")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--sizes", default="256,512", help="bucket sizes, comma-separated")
    ap.add_argument("--rounds", type=int, default=3, help="alternated runs of each binary per size")
    a = ap.parse_args()
    for size in (int(s) for s in a.sizes.split(",")):
        pixels(Path(a.root), size)
        res: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(a.rounds):
            res["before"].append(run(a.before, a.root, a.workers, size))
            res["after"].append(run(a.after, a.root, a.workers, size))
        b, f = statistics.median(res["before"]), statistics.median(res["after"])
        print(f"size {size}, {a.workers} worker(s): before {res['before']} images/s, after {res['after']}; "
              f"median {b:.1f} -> {f:.1f} ({f / b:.2f}x)")


if __name__ == "__main__":
    main()
