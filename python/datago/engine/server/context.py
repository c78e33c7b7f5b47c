"""Server: the state one application shares between its routes (:class:`ServerContext`) and the
``Depends`` that hands it to them."""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import time
from collections.abc import Iterable, Mapping
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.responses import Response

from ..dataroom import ApiError
from ..datasource import Datasource
from ..db import Engine, datasources
from ..executor import PageSpec, count, page_rows
from ..render import Renderer
from ..scan import safe_relpath
from ..signing import verify
from ..values import QueryError, has_nul
from .prefetch import Prefetcher, dumps

# How long a cached datasource root is trusted (seconds).
ROOT_CACHE_S = 5.0
#: default statement timeout of the server's queries (seconds)
STATEMENT_TIMEOUT_S = 30.0
#: most datasource names an unknown-datasource answer lists
KNOWN_NAMES_SHOWN = 20

log = logging.getLogger("datago.engine.server")

# a Host header value: a name or IPv4 address, or a bracketed IPv6 address, and an optional port
_HOST_RE = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>[0-9]{1,5}))?$")


def check_public_url(url: str, key: str = "public_url") -> str:
    """``url`` without a trailing ``/``, once checked to be an ``http(s)://host[:port][/path]``.

    Raises:
        ValueError: naming ``key``, for anything else (no scheme or host, a query, a fragment).
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"{key} must be an http(s) URL like https://host:port (no query), got {url!r}")
    return url.strip().rstrip("/")


def parse_allowed_hosts(hosts: Iterable[str] | str | None, key: str = "allowed_hosts") -> tuple[str, ...]:
    """Lower-cased ``host`` or ``host:port`` entries (``*``: any Host), from a list or a
    comma-separated str.

    Raises:
        ValueError: naming ``key``, for an entry that is not a host name or address.
    """
    if hosts is None:
        return ()
    items = hosts.split(",") if isinstance(hosts, str) else list(hosts)
    out = []
    for item in (str(h).strip().lower() for h in items):
        if not item:
            continue
        if item != "*" and not _HOST_RE.match(item):
            raise ValueError(f"{key}: {item!r} is not a host name, address or host:port")
        out.append(item)
    return tuple(out)


class ServerContext:
    """The engine an application serves, its page prefetcher and its cache of datasource roots.

    Args:
        engine: the storage engine.
        url_ttl: lifetime of signed file/blob URLs, in seconds.
        public_url: base URL clients reach the server at; None: see :meth:`base_url`.
        allowed_hosts: ``Host`` header values (``host`` or ``host:port``; ``*`` any) that
            ``next`` links and signed URLs may be built from when there is no ``public_url``.
        statement_timeout_s: time limit of each page or count statement (seconds; None: none).

    Raises:
        ValueError: a malformed ``public_url`` or ``allowed_hosts`` entry (naming the key).
    """

    def __init__(
        self,
        engine: Engine,
        url_ttl: int = 3600,
        public_url: str | None = None,
        allowed_hosts: Iterable[str] | str | None = None,
        statement_timeout_s: float | None = STATEMENT_TIMEOUT_S,
    ) -> None:
        self.engine = engine
        self.url_ttl = url_ttl
        self.public = check_public_url(public_url) if public_url else None
        self.allowed_hosts = parse_allowed_hosts(allowed_hosts)
        if statement_timeout_s is not None and not statement_timeout_s > 0:
            raise ValueError(f"statement_timeout must be > 0 seconds (or None), got {statement_timeout_s!r}")
        self.statement_timeout_s = statement_timeout_s
        self.prefetch = Prefetcher()
        self._roots: dict[str, Any] = {"at": 0.0, "generation": -1, "roots": {}, "names": set()}
        self._warned_hosts: set[str] = set()

    def base_url(self, request: Request) -> str:
        """The base URL of ``next`` and signed URLs (no trailing ``/``): ``public_url`` when set;
        else the request's ``Host`` when :attr:`allowed_hosts` has it; else the address the
        connection reached (the bind address; 127.0.0.1 for a loopback client), never an
        arbitrary ``Host`` (it would send clients and their signed URLs elsewhere)."""
        if self.public:
            return self.public
        scheme = request.url.scheme
        host = request.headers.get("host", "").strip().lower()
        if host and self.allowed_hosts and self._host_allowed(host):
            return f"{scheme}://{host}"
        server = request.scope.get("server")
        if not server:
            return f"{scheme}://127.0.0.1"
        addr, port = server[0], server[1]
        if addr in ("", "0.0.0.0", "::"):
            addr = "127.0.0.1"
        shown = f"[{addr}]" if ":" in str(addr) else addr
        default = (scheme == "http" and port == 80) or (scheme == "https" and port == 443) or port is None
        base = f"{scheme}://{shown}" if default else f"{scheme}://{shown}:{port}"
        same = host == base.split("://", 1)[1]  # the Host is the address itself: nothing was replaced
        if host and not same and host not in self._warned_hosts and len(self._warned_hosts) < 100:
            self._warned_hosts.add(host)
            log.warning(
                "Host %r is not an allowed host: URLs in answers use %s (set --public-url or --allowed-hosts)",
                host,
                base,
            )
        return base

    def _host_allowed(self, host: str) -> bool:
        m = _HOST_RE.match(host)
        if m is None:
            return False
        name = m.group("host")
        for entry in self.allowed_hosts:
            if entry == "*" or entry == host or entry == name:
                return True
        return False

    def roots(self, refresh: bool = False) -> dict[int, str]:
        """Datasource id -> root, re-read after a write through this engine, every ROOT_CACHE_S
        seconds, or when asked (a query per page or per file would cost a tenth of serving it)."""
        now = time.monotonic()
        c = self._roots
        engine = self.engine
        if refresh or c["generation"] != engine.write_generation or now - c["at"] >= ROOT_CACHE_S:
            generation = engine.write_generation
            with engine.read() as conn:
                rows = conn.execute(sa.select(datasources.c.id, datasources.c.root, datasources.c.name)).all()
            c.update(at=now, generation=generation, roots={i: r for i, r, _ in rows}, names={n for _, _, n in rows})
        return c["roots"]

    def check_sources(self, names: list[str] | None) -> None:
        """Check that every datasource of a query exists (a typo must not page an empty epoch).

        Raises:
            ApiError: 404 naming the unknown datasources (and some known ones).
        """
        if not names:
            return
        self.roots()
        missing = [n for n in names if n not in self._roots["names"]]
        if missing:
            self.roots(refresh=True)  # made by another process since
            missing = [n for n in names if n not in self._roots["names"]]
        if missing:
            known = sorted(self._roots["names"])
            shown = ", ".join(known[:KNOWN_NAMES_SHOWN]) + (" ..." if len(known) > KNOWN_NAMES_SHOWN else "")
            raise ApiError(
                404, f"no datasource named {' or '.join(repr(n) for n in missing)} (known: {shown or 'none'})"
            )

    def root_of(self, ds_id: int) -> str | None:
        """The root of a datasource (None if there is none); an id the cache does not know yet
        (a datasource made by another process) re-reads the roots once."""
        root = self.roots().get(ds_id)
        return root if root is not None else self.roots(refresh=True).get(ds_id)

    def signed_root(self, ds_id: str, path: str, exp: str | None, sig: str | None) -> str:
        """The root of the datasource of a signed file URL (``/files`` and ``/thumbs``), after
        checking the path stays inside it and the signature.

        Raises:
            ApiError: 404 for a path that would leave the root or an unknown datasource, 403 for a
                bad or expired signature.
        """
        try:
            safe_relpath(path)
        except ValueError:
            raise ApiError(404, "not found") from None
        if not ds_id.isdigit():
            raise ApiError(404, "not found")
        reason = verify(self.engine.secret(), "file", ds_id, path, exp, sig)
        if reason:
            raise ApiError(403, reason)
        root = self.root_of(int(ds_id))
        if root is None:
            raise ApiError(404, "not found")
        return root

    def renderer(self, base: str) -> Renderer:
        """A result renderer signing URLs under ``base``."""
        return Renderer(base, self.engine.secret(), self.roots(), self.url_ttl, self.engine.blobs.get)

    def datasource(self, name: str) -> Datasource:
        """The datasource ``name``.

        Raises:
            ApiError: 404 when there is none.
        """
        if has_nul(name):  # never stored
            raise ApiError(404, f"no datasource named {name!r}")
        with self.engine.read() as conn:
            row = conn.execute(sa.select(datasources).where(datasources.c.name == name)).first()
        if row is None:
            raise ApiError(404, f"no datasource named {name!r}")
        return Datasource(self.engine, row.id, row.name, row.root)

    def count(self, spec: PageSpec) -> dict[str, int]:
        """``{"count": n}`` for ``spec`` (its datasources checked, under the statement timeout).

        Raises:
            ApiError: 404 for an unknown datasource, 400 for a query over the limits or the timeout.
        """
        self.check_sources(spec.source_names)
        try:
            return {"count": count(self.engine, dataclasses.replace(spec, timeout_s=self.statement_timeout_s))}
        except QueryError as e:
            raise ApiError(400, str(e)) from None

    def run_page(
        self,
        request: Request,
        spec: PageSpec,
        want: set[str],
        return_latents: set[str] | None,
        next_params: Mapping[str, Any],
        body_key: str = "",
    ) -> Response:
        """The JSON answer ``{"next", "results"}`` for one page of ``spec``; the next page is
        computed ahead while the client takes this one.

        Raises:
            ApiError: 400 for a bad cursor or query, 404 for an unknown datasource.
            QueryError: a query over the limits or the statement timeout (answered 400).
        """
        engine = self.engine
        self.check_sources(spec.source_names)
        spec = dataclasses.replace(spec, timeout_s=self.statement_timeout_s)
        base = self.base_url(request)
        path = request.url.path
        query = {k: v for k, v in request.query_params.items() if k != "cursor"}
        query.update({k: str(v) for k, v in next_params.items()})
        key_base = (path, tuple(sorted(query.items())), body_key, base)

        def compute(cursor: str | None) -> tuple[bytes, str | None]:
            raw = page_rows(engine, dataclasses.replace(spec, cursor=cursor))
            results = self.renderer(base).render_page(raw, want, return_latents)
            nxt = None
            if raw.next_cursor:
                nxt = f"{base}{path}?{urlencode({**query, 'cursor': raw.next_cursor})}"
            return dumps({"next": nxt, "results": results}), raw.next_cursor

        generation = engine.write_generation
        result = self.prefetch.take((*key_base, spec.cursor), generation)
        if result is None:
            try:
                result = compute(spec.cursor)
            except ValueError as e:
                raise ApiError(400, str(e)) from None
        body, cursor = result
        if cursor:  # compute the next page while the client takes this one
            self.prefetch.schedule((*key_base, cursor), generation, functools.partial(compute, cursor))
        return Response(body, media_type="application/json")


def get_context(request: Request) -> ServerContext:
    """The :class:`ServerContext` of the application answering ``request`` (a dependency)."""
    ctx: ServerContext = request.app.state.ctx
    return ctx


#: a route parameter receiving the application's :class:`ServerContext`
Context = Annotated[ServerContext, Depends(get_context)]
