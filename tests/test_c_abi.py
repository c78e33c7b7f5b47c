"""The hand-written header is enough for a C program to embed libdatago.so."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from datago import _lib

ROOT = Path(__file__).resolve().parent.parent


def test_c_program_streams_a_folder(tmp_path: Path, photo_dir: Path, photos: list[Path]) -> None:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is not installed (apt-get install gcc): the C ABI test needs it")
    lib = _lib.library_path()
    exe = tmp_path / "abi_smoke"
    subprocess.run(
        ["gcc", "-Wall", "-Werror", "-o", str(exe), str(ROOT / "tests" / "c" / "abi_smoke.c"),
         "-I", str(ROOT / "go" / "capi"), str(lib), f"-Wl,-rpath,{lib.parent}"],
        check=True,
    )
    out = subprocess.run([str(exe), str(photo_dir)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"ok {len(photos)} samples")
