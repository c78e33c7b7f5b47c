"""The ``datago`` entry point: --version, and a one-line hint (no traceback) without the engine extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import datago
from datago._cli import main

PYTHON_DIR = str(Path(__file__).resolve().parent.parent / "python")


def test_version(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"datago-vips {datago.__version__}"


def test_missing_engine_extra_prints_a_hint() -> None:
    code = (
        f"import sys; sys.path.insert(0, {PYTHON_DIR!r}); sys.modules['sqlalchemy'] = None; "
        "from datago._cli import main; sys.exit(main(['token', 'list']))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "datago: the data engine needs the 'engine' extra (no module 'sqlalchemy'): pip install 'datago-vips[engine]'"
    ]


def test_engine_commands_run_through_the_entry_point(capsys) -> None:
    assert main(["--help"]) == 0
    assert "usage: datago" in capsys.readouterr().out
