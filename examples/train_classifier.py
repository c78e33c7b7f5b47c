"""Train a small CNN on the demo photos with datago.torch, checkpoint mid-epoch, get killed, resume.

The demo dataset (``benchmarks/demo_data.py``) cuts crops out of the wallpapers of Debian's
``mate-backgrounds`` and ``lomiri-wallpapers-20.04`` (or, with ``--photos DIR``, out of the
photographs in DIR, e.g. the repository's ``tests/data/photos``). This script

1. scans it into a datago engine datasource (SQLite in ``--workdir``) and sets two metadata fields
   per photo: ``wallpaper`` (the source photograph a crop was cut from, the class to learn) and
   ``package`` (the Debian package that ships it);
2. queries the datapoints that have a package (optionally only one package: ``--package``) and
   streams them through ``datago.torch`` as bucketed batches (``image_layout`` "CHW", seeded order,
   each batch one aspect-ratio bucket; labels come from the query's metadata);
3. trains a 4-layer CNN on CPU, printing the loss and images/s;
4. every ``--checkpoint-every`` steps saves model, optimizer and the loader's ``state_dict()``
   (atomically); ``--stop-after N`` exits abruptly (``os._exit``) after step N, as a kill would;
5. ``--resume`` continues from the checkpoint: the rest of the epoch, no sample twice.

Each finished epoch prints ``{"event": "epoch_end", "samples", "unique", "expected"}`` (samples
seen in the epoch, across restarts). ``--summary FILE`` writes the loss curve and the epochs as
JSON. Usage::

    python examples/train_classifier.py --steps 300 --stop-after 120      # killed at step 120
    python examples/train_classifier.py --steps 300 --resume              # resumes from step 100
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from datago.engine import datasources  # noqa: E402
from datago.engine.db import Engine  # noqa: E402
from datago.torch import DatagoIterableDataset, StatefulLoader  # noqa: E402

# isort: split
# benchmarks/demo_data.py (first- or third-party to isort depending on a ./demo_data folder)
from demo_data import N_SUBFOLDERS, build_dataset, find_sources, plan, render  # noqa: E402

STOP_EXIT_CODE = 3
_DEMO_NAME = re.compile(r"^\d{5,}_(?P<stem>.+)\.(jpg|png)$")
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255


class SmallCNN(nn.Module):
    """4 strided 3x3 convolutions with batch norm, global average pooling, a linear classifier.
    Takes float (N, 3, H, W) of any H, W (every bucket); returns logits (N, classes)."""

    def __init__(self, classes: int, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = [3, width // 2, width, 2 * width, 2 * width]
        for cin, cout in itertools.pairwise(channels):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def package_of(source: Path) -> str:
    """The Debian package a wallpaper comes from: lomiri-wallpapers-20.04 names its photographs
    "Title_by_Author", mate-backgrounds does not."""
    return "lomiri-wallpapers-20.04" if "_by_" in source.stem else "mate-backgrounds"


def build_demo(out_dir: Path, n: int, seed: int, photos: Path | None) -> tuple[Path, list[Path]]:
    """The demo images and their source photographs: from Debian's wallpaper packages
    (benchmarks/demo_data.py), or cut the same way from the photographs in ``photos`` (e.g. the
    repository's tests/data/photos, copies of those wallpapers), rendered in this process.

    Raises:
        FileNotFoundError: no source photographs.
    """
    if photos is None:
        return build_dataset(out_dir, n, seed), find_sources()
    sources = sorted(p for p in Path(photos).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not sources:
        raise FileNotFoundError(f"--photos {photos}: no .jpg/.png photographs")
    marker = out_dir / ".complete-photos"
    key = json.dumps({"n": n, "seed": seed, "photos": [p.name for p in sources]})
    if not (marker.is_file() and marker.read_text() == key):
        for k in range(min(n, N_SUBFOLDERS)):
            (out_dir / f"part{k}").mkdir(parents=True, exist_ok=True)
        for task in plan(sources, out_dir, n, seed):
            render(task)
        marker.write_text(key)
    return out_dir, sources


def label_datasource(data_dir: Path, source_photos: list[Path], engine: Engine) -> Any:
    """Scan the demo folder into the datasource "wallpapers" and set ``wallpaper`` (the source
    photograph's name) and ``package`` for the datapoints that have none yet (one transaction)."""
    src = datasources.get_or_create("wallpapers", data_dir, db_url=engine, progress=False)
    sources = {p.stem.lower(): (p.stem, package_of(p)) for p in source_photos}
    fields = src.fields
    unlabeled = src[src["package"].is_null()].all() if "package" in fields else src.all()
    with src.metadata_context() as ctx:
        for dp in unlabeled:
            match = _DEMO_NAME.match(Path(dp.path).name)
            if match is None or match["stem"] not in sources:
                continue
            wallpaper, package = sources[match["stem"]]
            ctx.update_metadata(dp.path, {"wallpaper": wallpaper, "package": package})
    return src


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """torch.save to a temporary file, then rename: a kill never leaves half a checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "demo_data", help="demo dataset folder (built if missing)")
    parser.add_argument("--images", type=int, default=2000, help="demo dataset size")
    parser.add_argument(
        "--photos",
        type=Path,
        default=None,
        help="cut the demo images from the photographs in this folder (e.g. tests/data/photos) "
        "instead of Debian's wallpaper packages",
    )
    parser.add_argument("--workdir", type=Path, default=ROOT / "demo_out" / "train", help="checkpoint, engine db")
    parser.add_argument("--steps", type=int, default=300, help="training steps (batches)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=128, help="bucket size in px (buckets of about size² pixels)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0, help="model init and data order")
    parser.add_argument("--package", default=None, help="train only on the photos of this Debian package")
    parser.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints")
    parser.add_argument("--stop-after", type=int, default=0, help="exit abruptly after this step (simulated kill)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --workdir")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (0: the Go core's threads)")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=max(1, len(os.sched_getaffinity(0)) // 2),
        help="torch's intra-op threads (default: half the cores; the Go core decodes on the rest)",
    )
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--summary", type=Path, default=None, help="write the loss curve and epochs as JSON")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.torch_threads)
    args.workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = args.workdir / "checkpoint.pt"
    data_dir, source_photos = build_demo(args.data, args.images, 0, args.photos)  # the demo set: seed 0

    # -- labels from an engine query --------------------------------------------------------------
    engine = Engine(args.workdir / "engine.sqlite")
    src = label_datasource(data_dir, source_photos, engine)
    view = src[src["package"].is_not_null()]
    if args.package:
        view = view[view["package"] == args.package]
    result = view.all()
    classes = sorted({dp.metadata["wallpaper"] for dp in result})
    class_index = {name: i for i, name in enumerate(classes)}
    print(f"query {view.query.to_json()}: {len(result)} photos, {len(classes)} wallpapers", flush=True)

    client_config = {
        "image_config": {
            "crop_and_resize": True,
            "default_image_size": args.size,
            "downsampling_ratio": 16,
            "min_aspect_ratio": 0.5,
            "max_aspect_ratio": 2.0,
        },
        "batch_size": args.batch_size,
        "image_layout": "CHW",
        "seed": args.seed,
        "samples_buffer_size": 4 * args.batch_size,
    }
    dataset = DatagoIterableDataset(result, client_config, fields=("id", "attributes"))
    loader = StatefulLoader(dataset, num_workers=args.num_workers)

    model = SmallCNN(len(classes))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    step, epoch, losses, epoch_ids, epochs = 0, 0, [], [], []
    if args.resume:
        if not checkpoint.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint}")
        ckpt = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        loader.load_state_dict(json.loads(ckpt["data"]))
        step, epoch = ckpt["step"], ckpt["epoch"]
        losses, epoch_ids, epochs = ckpt["losses"], ckpt["epoch_ids"], json.loads(ckpt["epochs"])
        print(f"resumed from {checkpoint}: step {step}, epoch {epoch}, {len(epoch_ids)} samples seen in it", flush=True)

    model.train()
    t_start = t_log = time.perf_counter()
    images_total = images_log = 0
    while step < args.steps:
        loader.set_epoch(epoch)  # keeps a state loaded for this epoch
        for batch in loader:
            images = (batch["images"].float() - MEAN) / STD  # (N, 3, H, W) from uint8
            labels = torch.tensor([class_index[a["wallpaper"]] for a in batch["attributes"]])
            loss = nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

            step += 1
            losses.append(loss.item())
            epoch_ids.extend(batch["ids"])
            images_total += len(labels)
            images_log += len(labels)
            if step % args.log_every == 0 or step == args.steps:
                now = time.perf_counter()
                recent = losses[-args.log_every :]
                print(
                    f"epoch {epoch} step {step:>5}/{args.steps}  loss {sum(recent) / len(recent):.3f}  "
                    f"{images_log / (now - t_log):7.1f} images/s  (bucket {tuple(images.shape[2:])})",
                    flush=True,
                )
                t_log, images_log = now, 0
            if step % args.checkpoint_every == 0:
                save_checkpoint(
                    checkpoint,
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "data": json.dumps(loader.state_dict()),  # JSON-able: one dict for this rank
                        "step": step,
                        "epoch": epoch,
                        "losses": losses,
                        "epoch_ids": epoch_ids,
                        "epochs": json.dumps(epochs),
                    },
                )
                print(f"checkpoint at step {step}", flush=True)
            if args.stop_after and step == args.stop_after:
                print(f"stopping abruptly after step {step} (--stop-after)", flush=True)
                os._exit(STOP_EXIT_CODE)
            if step >= args.steps:
                break
        else:
            report = {
                "event": "epoch_end",
                "epoch": epoch,
                "samples": len(epoch_ids),
                "unique": len(set(epoch_ids)),
                "expected": len(result),
            }
            epochs.append(report)
            print(json.dumps(report), flush=True)
            epoch, epoch_ids = epoch + 1, []

    elapsed = time.perf_counter() - t_start
    print(
        f"done: {step} steps, {images_total} images in {elapsed:.1f} s, {images_total / elapsed:.1f} images/s "
        f"(this run); loss {losses[0]:.3f} -> {losses[-1]:.3f}",
        flush=True,
    )
    if args.summary:
        args.summary.write_text(
            json.dumps(
                {
                    "steps": step,
                    "losses": losses,
                    "epochs": epochs,
                    "classes": classes,
                    "images_per_second": images_total / elapsed,
                }
            )
        )
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
