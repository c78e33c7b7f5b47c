"""Server: the outermost ASGI middleware (:class:`Guard`): the API key is checked and the body
size bounded before anything reads the body, and an unhandled error is answered with a JSON 500
that keeps the connection open.

- ``/api/...`` (except ``/api/health``) needs a valid key before the application runs: an
  unauthenticated client is answered 401 without its body being read (uvicorn then discards the
  body; the connection stays usable).
- A body over ``max_body_bytes`` is answered 413: at once when ``Content-Length`` says so,
  else as soon as the bytes read pass the limit (the application then sees a disconnect).
- An exception that leaves the application is logged and answered ``{"error": "internal server
  error", "status": 500}``, and not raised further: Starlette's error middleware re-raises after
  answering, and uvicorn then closes the keep-alive connection, resetting the client's next request.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.concurrency import run_in_threadpool

from ..dataroom import ApiError
from .auth import _TOKEN_SCOPE_KEY, authenticate
from .context import ServerContext

log = logging.getLogger("datago.engine.server")

#: default largest request body (bytes): 16 MiB
MAX_BODY_BYTES = 16 << 20
#: the key under which the scope carries the request's :class:`~datago.engine.tokens.TokenInfo`
TOKEN_SCOPE_KEY = _TOKEN_SCOPE_KEY


def needs_token(path: str) -> bool:
    """True for the paths that need an API key (``/api/...`` but ``/api/health``)."""
    return path.startswith("/api/") and path.rstrip("/") != "/api/health"


def _json_answer(status: int, message: str) -> tuple[dict[str, Any], dict[str, Any]]:
    body = json.dumps({"error": message, "status": status}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Token"))
    return (
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body, "more_body": False},
    )


class Guard:
    """See the module docstring.

    Args:
        app: the wrapped ASGI application.
        ctx: the application's :class:`ServerContext` (its engine verifies keys).
        max_body_bytes: largest request body accepted, in bytes (>= 0).

    Raises:
        ValueError: ``max_body_bytes`` below 0 (naming ``max_body_bytes``).
    """

    def __init__(self, app: Any, ctx: ServerContext, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        if not isinstance(max_body_bytes, int) or max_body_bytes < 0:
            raise ValueError(f"max_body_bytes must be an int >= 0, got {max_body_bytes!r}")
        self.app = app
        self.ctx = ctx
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = {"started": False, "complete": False, "answered": False}

        async def send_app(message: dict[str, Any]) -> None:
            if state["answered"]:  # the guard answered (413) while the application ran
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                state["complete"] = True
            await send(message)

        async def answer(status: int, message: str) -> None:
            if state["started"]:
                return
            state["started"] = state["complete"] = state["answered"] = True
            start, body = _json_answer(status, message)
            await send(start)
            await send(body)

        limit = self.max_body_bytes
        too_large = f"the request body is larger than the server's limit of {limit} bytes (--max-body-bytes)"
        try:
            if needs_token(scope["path"]):
                header = ""
                for k, v in scope["headers"]:
                    if k == b"authorization":
                        header = v.decode("latin-1")
                info = await run_in_threadpool(authenticate, self.ctx.engine, header)
                scope[TOKEN_SCOPE_KEY] = info
            for k, v in scope["headers"]:
                if k == b"content-length":
                    try:
                        declared = int(v)
                    except ValueError:
                        await answer(400, "malformed Content-Length")
                        return
                    if declared > limit:
                        await answer(413, too_large)
                        return
            seen = 0

            async def receive_limited() -> dict[str, Any]:
                nonlocal seen
                if state["answered"]:
                    return {"type": "http.disconnect"}
                message: dict[str, Any] = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > limit:
                        await answer(413, too_large)
                        return {"type": "http.disconnect"}
                return message

            await self.app(scope, receive_limited, send_app)
        except ApiError as e:  # from authenticate
            await answer(e.status, e.message)
        except Exception as exc:
            if state["answered"]:  # the application failed on the disconnect after a 413
                return
            if state["started"] and not state["complete"]:
                raise  # half an answer: only closing the connection can end it
            if not state["started"]:
                log.error("internal error", exc_info=exc)
                await answer(500, "internal server error")
            # else answered already (by the error handler, which re-raises): keep the connection
