"""The ``datago`` command: ``serve``, ``token create|list|revoke``, ``source add|list``.

Storage defaults to ``$DATAGO_ENGINE_DB`` or ``~/.cache/datago/engine.sqlite``; every command
takes ``--db URL`` (SQLAlchemy URL or SQLite path).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="datago", description="datago data engine")
    sub = p.add_subparsers(dest="command", required=True)

    def db_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--db",
            default=None,
            help="storage URL or SQLite path (default $DATAGO_ENGINE_DB or ~/.cache/datago/engine.sqlite)",
        )

    s = sub.add_parser("serve", help="run the HTTP API server")
    db_arg(s)
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    s.add_argument("--url-ttl", type=int, default=3600, help="lifetime of signed file URLs in seconds (default 3600)")
    s.add_argument(
        "--public-url",
        default=None,
        help="base URL clients use to reach the server, that next links and signed URLs are built on "
        "(default $DATAGO_SERVER_URL; without either: an --allowed-hosts Host, else the address reached)",
    )
    s.add_argument(
        "--allowed-hosts",
        default=None,
        help="comma-separated Host header values (host or host:port, * for any) URLs may be built from "
        "when there is no public URL (default: none; never an arbitrary Host)",
    )
    s.add_argument(
        "--max-body-bytes",
        type=int,
        default=16 << 20,
        help="largest request body in bytes; larger ones are answered 413 (default 16 MiB)",
    )
    s.add_argument(
        "--statement-timeout",
        type=float,
        default=30.0,
        help="time limit of a query's statement in seconds; over it the answer is a 400 (default 30; 0: none)",
    )

    t = sub.add_parser("token", help="manage API tokens")
    tsub = t.add_subparsers(dest="action", required=True)
    tc = tsub.add_parser("create", help="create a token and print its key (shown once)")
    db_arg(tc)
    tc.add_argument("--name", required=True)
    tc.add_argument("--read-only", action="store_true", help="refuse writes with this token")
    tl = tsub.add_parser("list", help="list tokens")
    db_arg(tl)
    tl.add_argument("--all", action="store_true", help="include revoked tokens")
    tr = tsub.add_parser("revoke", help="revoke the active token with this name")
    db_arg(tr)
    tr.add_argument("name")

    src = sub.add_parser("source", help="manage datasources")
    ssub = src.add_subparsers(dest="action", required=True)
    sa_ = ssub.add_parser("add", help="create (or rescan) a datasource")
    db_arg(sa_)
    sa_.add_argument("name")
    sa_.add_argument("root", help="local folder or http(s) base URL")
    sa_.add_argument("--no-progress", action="store_true")
    sl = ssub.add_parser("list", help="list datasources")
    db_arg(sl)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``datago`` command line.

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        Exit status: 0 success, 1 error (printed to stderr), 2 usage error.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0) if isinstance(e.code, int) else 2
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130
    except (KeyError, ValueError, TypeError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"datago: error: {msg}", file=sys.stderr)
        return 1
    except Exception as e:  # e.g. the database cannot be reached
        print(f"datago: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from .db import get_engine

    if args.command == "serve":
        import os

        from .db import SERVER_URL_ENV
        from .server import run

        if args.max_body_bytes < 0:
            raise ValueError(f"--max-body-bytes must be >= 0, got {args.max_body_bytes}")
        if args.statement_timeout < 0:
            raise ValueError(f"--statement-timeout must be >= 0 seconds, got {args.statement_timeout:g}")
        run(
            args.db,
            host=args.host,
            port=args.port,
            url_ttl=args.url_ttl,
            public_url=args.public_url or os.environ.get(SERVER_URL_ENV) or None,
            allowed_hosts=args.allowed_hosts,
            max_body_bytes=args.max_body_bytes,
            statement_timeout_s=args.statement_timeout or None,
        )
        return 0
    engine = get_engine(args.db)
    if args.command == "token":
        from . import tokens

        if args.action == "create":
            print(tokens.create_token(engine, args.name, read_only=args.read_only))
        elif args.action == "list":
            for t in tokens.list_tokens(engine, include_revoked=args.all):
                mode = "read-only" if t.read_only else "read-write"
                state = f"revoked {t.revoked_at}" if t.revoked_at else "active"
                print(f"{t.id}\t{t.name}\t{mode}\t{t.created_at}\t{state}")
        else:
            n = tokens.revoke_token(engine, args.name)
            print(f"revoked {n} token(s) named {args.name}")
        return 0
    from . import datasources

    if args.action == "add":
        ds = datasources.get_or_create(args.name, args.root, db_url=engine, scan=False)
        added = ds.scan(progress=not args.no_progress)
        print(f"{ds.name}: {added} new datapoint(s), {ds.count()} in total")
    else:
        for ds in datasources.get_datasources(engine):
            print(f"{ds.name}\t{ds.root}\t{ds.count()}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
