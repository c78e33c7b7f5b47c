"""Server: the FastAPI application (:func:`create_app`): routers, error answers, the file fast
path."""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..dataroom import ApiError
from ..db import Engine, get_engine
from . import routes_datasources, routes_files, routes_gallery, routes_images
from .context import ServerContext

log = logging.getLogger("datago.engine.server")


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error as ``{"error": message, "status": code}``, never with a stack trace."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Token"} if exc.status == 401 else None
        return JSONResponse({"error": exc.message, "status": exc.status}, status_code=exc.status, headers=headers)

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
    db: Engine | str | os.PathLike[str] | None = None, *, url_ttl: int = 3600, public_url: str | None = None
) -> FastAPI:
    """The FastAPI application serving engine ``db``.

    Args:
        db: an :class:`Engine`, a storage URL or SQLite path (default storage when None).
        url_ttl: lifetime of signed file/blob URLs, in seconds.
        public_url: base URL clients reach the server at (default: from each request).
    """
    engine = get_engine(db)
    ctx = ServerContext(engine, url_ttl=url_ttl, public_url=public_url)
    app = FastAPI(title="datago engine", version="1")
    app.state.ctx = ctx
    app.state.engine = engine
    app.state.prefetch = ctx.prefetch
    add_error_handlers(app)
    for module in (routes_images, routes_datasources, routes_files, routes_gallery):
        app.include_router(module.router)
    app.add_middleware(routes_files.FileFastPath, ctx=ctx)
    return app
