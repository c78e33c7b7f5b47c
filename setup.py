"""Build hook: `pip install .` compiles libdatago.so with Go (needs Go, libvips-dev, libjpeg-dev and libdeflate-dev)."""

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
        subprocess.run(
            ["go", "build", "-buildmode=c-shared", "-o", str(pkg / "libdatago.so"), "./go/capi"],
            cwd=ROOT,
            check=True,
        )
        (pkg / "libdatago.h").unlink(missing_ok=True)
        shutil.copyfile(ROOT / "go" / "capi" / "datago.h", pkg / "datago.h")
        super().run()


class BinaryDistribution(Distribution):
    """The wheel carries a native library: mark it platform-specific."""

    def has_ext_modules(self) -> bool:
        return True


setup(cmdclass={"build_py": BuildWithGo}, distclass=BinaryDistribution)
