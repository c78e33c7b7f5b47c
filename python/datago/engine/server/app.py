"""Server: the FastAPI application (:func:`create_app`): routers, error answers, the file fast
path."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..dataroom import ApiError
from ..db import Engine, get_engine
from ..values import QueryError
from . import routes_datasources, routes_files, routes_gallery, routes_images
from .context import STATEMENT_TIMEOUT_S, ServerContext
from .guard import MAX_BODY_BYTES, Guard

log = logging.getLogger("datago.engine.server")


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error as ``{"error": message, "status": code}``, never with a stack trace."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Token"} if exc.status == 401 else None
        return JSONResponse({"error": exc.message, "status": exc.status}, status_code=exc.status, headers=headers)

    @app.exception_handler(QueryError)
    async def _query_error(_request: Request, exc: QueryError) -> JSONResponse:
        return JSONResponse({"error": str(exc), "status": 400}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail), "status": exc.status_code}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        msgs = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors())
        return JSONResponse({"error": f"invalid request: {msgs}", "status": 422}, status_code=422)

    @app.exception_handler(Exception)
    async def _internal_error(_request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error", exc_info=exc)
        return JSONResponse({"error": "internal server error", "status": 500}, status_code=500)


def create_app(
    db: Engine | str | os.PathLike[str] | None = None,
    *,
    url_ttl: int = 3600,
    public_url: str | None = None,
    allowed_hosts: Iterable[str] | str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    statement_timeout_s: float | None = STATEMENT_TIMEOUT_S,
) -> FastAPI:
    """The FastAPI application serving engine ``db``.

    Args:
        db: an :class:`Engine`, a storage URL or SQLite path (default storage when None).
        url_ttl: lifetime of signed file/blob URLs, in seconds.
        public_url: base URL clients reach the server at (``next`` links and signed URLs are
            built on it); None: from an allowed ``Host``, else the address the client reached.
        allowed_hosts: ``Host`` values (``host`` or ``host:port``, ``*`` any) URLs may be built
            from when there is no ``public_url``.
        max_body_bytes: largest request body (bytes); larger ones are answered 413.
        statement_timeout_s: time limit of a page or count statement (seconds; None: none).

    Raises:
        ValueError: a malformed option (naming it).
    """
    if not isinstance(max_body_bytes, int) or isinstance(max_body_bytes, bool) or max_body_bytes < 0:
        raise ValueError(f"max_body_bytes must be an int >= 0, got {max_body_bytes!r}")
    engine = get_engine(db)
    ctx = ServerContext(
        engine,
        url_ttl=url_ttl,
        public_url=public_url,
        allowed_hosts=allowed_hosts,
        statement_timeout_s=statement_timeout_s,
    )
    app = FastAPI(title="datago engine", version="1")
    app.state.ctx = ctx
    app.state.engine = engine
    app.state.prefetch = ctx.prefetch
    add_error_handlers(app)
    for module in (routes_images, routes_datasources, routes_files, routes_gallery):
        app.include_router(module.router)
    app.add_middleware(routes_files.FileFastPath, ctx=ctx)
    app.add_middleware(Guard, ctx=ctx, max_body_bytes=max_body_bytes)  # outermost: runs first
    return app
