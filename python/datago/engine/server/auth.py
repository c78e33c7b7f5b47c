"""Server: API-key authentication as FastAPI dependencies.

``Authorization: Token <key>`` (or ``Bearer <key>``), keys from ``datago token create``: 401
without a valid key, 403 for a read-only key on a write endpoint. A route asks for a key with a
parameter typed :data:`ReadToken` or :data:`WriteToken`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..dataroom import ApiError
from ..db import Engine
from ..tokens import TokenInfo, verify_token
from .context import Context


def authenticate(engine: Engine, authorization: str, write: bool = False) -> TokenInfo:
    """The token an ``Authorization`` header value carries.

    Raises:
        ApiError: 401 for a missing, malformed, unknown or revoked key; 403 for a read-only key
            when ``write``.
    """
    header = authorization.strip()
    if not header:
        raise ApiError(401, "authentication required: send 'Authorization: Token <key>'")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() not in ("token", "bearer") or not key:
        raise ApiError(401, "malformed Authorization header, expected 'Token <key>'")
    info = verify_token(engine, key)
    if info is None:
        raise ApiError(401, "invalid or revoked token")
    if write and info.read_only:
        raise ApiError(403, "this token is read-only")
    return info


# the scope key under which the guard middleware (.guard) leaves the key it verified
_TOKEN_SCOPE_KEY = "datago.token"


def require_token(request: Request, ctx: Context) -> TokenInfo:
    """Dependency: any valid key (read endpoints); the one the guard verified when it did."""
    info = request.scope.get(_TOKEN_SCOPE_KEY)
    if isinstance(info, TokenInfo):
        return info
    return authenticate(ctx.engine, request.headers.get("authorization", ""))


def require_write_token(request: Request, ctx: Context) -> TokenInfo:
    """Dependency: a valid key that may write (write endpoints).

    Raises:
        ApiError: 401 without a valid key, 403 for a read-only one.
    """
    info = request.scope.get(_TOKEN_SCOPE_KEY)
    if isinstance(info, TokenInfo):
        if info.read_only:
            raise ApiError(403, "this token is read-only")
        return info
    return authenticate(ctx.engine, request.headers.get("authorization", ""), write=True)


#: a route parameter that requires a valid key
ReadToken = Annotated[TokenInfo, Depends(require_token)]
#: a route parameter that requires a valid key that may write
WriteToken = Annotated[TokenInfo, Depends(require_write_token)]
