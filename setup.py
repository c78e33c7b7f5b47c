"""Build hook: `pip install .` compiles libdatago.so with Go (needs Go, libvips-dev, libjpeg-dev and libdeflate-dev).

``DATAGO_PREBUILT=1`` packages the libdatago.so already in python/datago (scripts/build_wheel.sh).
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parent


class BuildWithGo(build_py):
    """Builds the Go core into the package before copying it."""

    def run(self) -> None:
        pkg = ROOT / "python" / "datago"
        if os.environ.get("DATAGO_PREBUILT") == "1":
            if not (pkg / "libdatago.so").is_file():
                raise SystemExit("DATAGO_PREBUILT=1 but python/datago/libdatago.so is missing")
            super().run()
            return
        _check_build_tools()
        subprocess.run(
            ["go", "build", "-buildmode=c-shared", "-o", str(pkg / "libdatago.so"), "./go/capi"],
            cwd=ROOT,
            check=True,
        )
        (pkg / "libdatago.h").unlink(missing_ok=True)
        shutil.copyfile(ROOT / "go" / "capi" / "datago.h", pkg / "datago.h")
        super().run()


_HINT = "install Go >= 1.22 and libvips-dev (+ libjpeg-dev, libdeflate-dev, pkg-config), or use the wheel"


def _check_build_tools() -> None:
    """Fails with one clear message when Go (>= 1.22) or the libvips headers are missing."""
    go = shutil.which("go")
    if go is None:
        raise SystemExit(f"datago: building from source needs Go, which is not on PATH: {_HINT}")
    out = subprocess.run([go, "version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"go(\d+)\.(\d+)", out)
    if m is None or (int(m.group(1)), int(m.group(2))) < (1, 22):
        raise SystemExit(f"datago: building from source needs Go >= 1.22, found {out.strip()!r}: {_HINT}")
    pkg_config = shutil.which("pkg-config")
    for module in ("vips", "glib-2.0"):
        ok = pkg_config is not None and subprocess.run(
            [pkg_config, "--exists", module], capture_output=True, check=False
        ).returncode == 0
        if not ok:
            raise SystemExit(f"datago: building from source needs the {module} headers (pkg-config {module}): {_HINT}")


class BinaryDistribution(Distribution):
    """The wheel carries a native library: mark it platform-specific."""

    def has_ext_modules(self) -> bool:
        return True


setup(cmdclass={"build_py": BuildWithGo}, distclass=BinaryDistribution)
