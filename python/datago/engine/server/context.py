"""Server: the state one application shares between its routes (:class:`ServerContext`) and the
``Depends`` that hands it to them."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.responses import Response

from ..dataroom import ApiError
from ..datasource import Datasource
from ..db import Engine, datasources
from ..executor import PageSpec, page_rows
from ..render import Renderer
from ..scan import safe_relpath
from ..signing import verify
from ..values import has_nul
from .prefetch import Prefetcher, dumps

# How long a cached datasource root is trusted (seconds).
ROOT_CACHE_S = 5.0


class ServerContext:
    """The engine an application serves, its page prefetcher and its cache of datasource roots.

    Args:
        engine: the storage engine.
        url_ttl: lifetime of signed file/blob URLs, in seconds.
        public_url: base URL clients reach the server at (None: from each request).
    """

    def __init__(self, engine: Engine, url_ttl: int = 3600, public_url: str | None = None) -> None:
        self.engine = engine
        self.url_ttl = url_ttl
        self.public = public_url.rstrip("/") if public_url else None
        self.prefetch = Prefetcher()
        self._roots: dict[str, Any] = {"at": 0.0, "generation": -1, "roots": {}}

    def base_url(self, request: Request) -> str:
        """The base URL of ``next`` and signed URLs (no trailing ``/``)."""
        return self.public or str(request.base_url).rstrip("/")

    def roots(self, refresh: bool = False) -> dict[int, str]:
        """Datasource id -> root, re-read after a write through this engine, every ROOT_CACHE_S
        seconds, or when asked (a query per page or per file would cost a tenth of serving it)."""
        now = time.monotonic()
        c = self._roots
        engine = self.engine
        if refresh or c["generation"] != engine.write_generation or now - c["at"] >= ROOT_CACHE_S:
            generation = engine.write_generation
            with engine.read() as conn:
                fresh = {i: r for i, r in conn.execute(sa.select(datasources.c.id, datasources.c.root))}
            c.update(at=now, generation=generation, roots=fresh)
        return c["roots"]

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
            ApiError: 400 for a bad cursor or query.
        """
        engine = self.engine
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
