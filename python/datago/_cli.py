"""Entry point of the ``datago`` command: ``--version``, and a one-line hint when the engine extra is missing.

The commands themselves live in :mod:`datago.engine.cli`; importing it needs the ``engine`` extra
(SQLAlchemy, FastAPI, ...), which a loader-only install does not have.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

DISTRIBUTION = "datago-vips"
ENGINE_HINT = f"pip install '{DISTRIBUTION}[engine]'"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``datago`` command line.

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        Exit status: 0 success, 1 error (e.g. the engine extra is missing), 2 usage error.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["--version"], ["-V"]):
        from . import __version__

        print(f"{DISTRIBUTION} {__version__}")
        return 0
    try:
        from .engine import cli
    except ModuleNotFoundError as e:
        if e.name is not None and (e.name == "datago" or e.name.startswith("datago.")):
            raise
        print(f"datago: the data engine needs the 'engine' extra (no module {e.name!r}): {ENGINE_HINT}",
              file=sys.stderr)
        return 1
    return cli.main(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
