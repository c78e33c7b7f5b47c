"""Server routes: signed, expiring file and blob URLs (``/files/{datasource_id}/{path}``,
``/blobs/{sha256}``; no key needed), and the ASGI fast path for small local files."""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from ..dataroom import ApiError
from ..scan import file_url as http_file_url
from ..scan import is_http, local_file
from ..signing import verify
from .context import Context, ServerContext

router = APIRouter()

# Files up to this size (bytes) are answered from memory in one piece; larger ones, and Range
# requests (a resumed download), are streamed by FileResponse.
SMALL_FILE_BYTES = 16 << 20
# Files up to this size (bytes) are read on the event loop by the /files/ fast path.
FAST_FILE_BYTES = 4 << 20


def file_response(full: os.PathLike[str] | str, headers: Mapping[str, str]) -> Response:
    """A local file as an HTTP answer. A small file without a Range request is read whole and
    sent as one body (Starlette's FileResponse costs ~2 ms of CPU per file in chunked async
    reads, more than the loader's decode of a small image); it carries the same validators
    (Last-Modified, ETag) so a client can resume with If-Range against either kind of answer."""
    st = os.stat(full)
    if "range" in headers or st.st_size > SMALL_FILE_BYTES:
        return FileResponse(full, stat_result=st)
    with open(full, "rb") as f:
        data = f.read()
    media_type = mimetypes.guess_type(os.fspath(full))[0] or "application/octet-stream"
    probe = FileResponse(full, stat_result=st)  # reuse Starlette's validator format
    return Response(
        data,
        media_type=media_type,
        headers={k: probe.headers[k] for k in ("last-modified", "etag", "accept-ranges") if k in probe.headers},
    )


def resolve_file(
    ctx: ServerContext, ds_id: str, path: str, exp: str | None, sig: str | None
) -> str | os.PathLike[str] | Response:
    """The local file a signed /files/ URL names, or a redirect for an http root.

    Raises:
        ApiError: 404 for a path that would leave the root or does not exist, 403 for a
            bad or expired signature.
    """
    root = ctx.signed_root(ds_id, path, exp, sig)
    if is_http(root):
        return RedirectResponse(http_file_url(root, path))
    full = local_file(root, path)
    if full is None:
        raise ApiError(404, "not found")
    return full


@router.get("/files/{ds_id}/{path:path}")
def get_file(
    request: Request, ctx: Context, ds_id: str, path: str, exp: str | None = None, sig: str | None = None
) -> Response:
    target = resolve_file(ctx, ds_id, path, exp, sig)
    return target if isinstance(target, Response) else file_response(target, request.headers)


@router.get("/blobs/{sha256}")
def get_blob(ctx: Context, sha256: str, exp: str | None = None, sig: str | None = None) -> Response:
    reason = verify(ctx.engine.secret(), "blob", sha256, "", exp, sig)
    if reason:
        raise ApiError(403, reason)
    try:
        path = ctx.engine.blobs.path_for(sha256)
    except ValueError:
        raise ApiError(404, "not found") from None
    if not path.is_file():
        raise ApiError(404, "not found")
    return FileResponse(path, media_type="application/octet-stream")


def fast_file(ctx: ServerContext, scope: Mapping[str, Any]) -> Response | None:
    """The answer to a plain GET of a small local file, or None for anything else (errors,
    Range, redirects, large files, repeated parameters), which the get_file route answers."""
    if scope["method"] != "GET" or any(k == b"range" for k, _ in scope["headers"]):
        return None
    ds_id, sep, path = scope["path"][len("/files/") :].partition("/")
    params = parse_qs(scope["query_string"].decode("latin-1"))
    if not sep or any(len(v) != 1 for v in params.values()):
        return None
    try:
        target = resolve_file(ctx, ds_id, path, params.get("exp", [None])[0], params.get("sig", [None])[0])
        if isinstance(target, Response) or os.stat(target).st_size > FAST_FILE_BYTES:
            return None
        return file_response(target, {})
    except (ApiError, OSError):
        return None


class FileFastPath:
    """ASGI middleware serving small local files straight away, before FastAPI's routing,
    parameter validation and thread pool, which cost more than the file itself (the db source
    fetches one per sample). Reads happen on the event loop, so only files up to
    FAST_FILE_BYTES.

    Args:
        app: the wrapped ASGI application.
        ctx: the application's :class:`ServerContext`.
    """

    def __init__(self, app: Any, ctx: ServerContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/files/"):
            response = fast_file(self.ctx, scope)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
