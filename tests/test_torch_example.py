"""examples/train_classifier.py, short, on demo images cut from the committed test photographs:
killed mid-epoch after a checkpoint, resumed; the loss goes down and the interrupted epoch delivers
every photo exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "train_classifier.py"
PHOTOS = ROOT / "tests" / "data" / "photos"  # copies of the Debian wallpapers (see its LICENSE.md)
TIMEOUT_S = 600
STOP_EXIT_CODE = 3  # examples/train_classifier.py's --stop-after exit


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(p for p in (str(ROOT / "python"), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=TIMEOUT_S
    )


def test_train_classifier_kill_and_resume(tmp_path: Path) -> None:
    images = 96
    common = [
        "--data", str(tmp_path / "demo"), "--images", str(images), "--photos", str(PHOTOS),
        "--workdir", str(tmp_path / "work"),
        "--steps", "30", "--batch-size", "8", "--size", "64", "--checkpoint-every", "4", "--log-every", "2",
        "--summary", str(tmp_path / "summary.json"),
    ]  # fmt: skip
    killed = run([*common, "--stop-after", "7"])
    assert killed.returncode == STOP_EXIT_CODE, killed.stdout + killed.stderr
    assert "checkpoint at step 4" in killed.stdout and "stopping abruptly after step 7" in killed.stdout
    assert not (tmp_path / "summary.json").exists()

    resumed = run([*common, "--resume"])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed from" in resumed.stdout and "step 4, epoch 0" in resumed.stdout
    assert "images/s" in resumed.stdout

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 30 and len(summary["losses"]) == 30
    first, last = summary["losses"][:5], summary["losses"][-5:]
    assert sum(last) / 5 < sum(first) / 5, summary["losses"]
    epochs = summary["epochs"]
    assert epochs and epochs[0]["epoch"] == 0
    for epoch in epochs:  # epoch 0 spans the kill: every photo once, none twice
        assert epoch["samples"] == epoch["unique"] == epoch["expected"] == images, epochs

    # the steps replayed after the kill (5..7) have the losses of the killed run: same batches,
    # same model state
    def loss_at(out: str, step: int) -> str:
        prefix = f"epoch 0 step {step:>5}/"
        return next(line for line in out.splitlines() if line.startswith(prefix)).split("loss ")[1].split()[0]

    assert loss_at(killed.stdout, 6) == loss_at(resumed.stdout, 6)
