"""Server API tokens: created and revoked with ``datago token ...``; only a sha256 of each key
is stored. Clients send ``Authorization: Token <key>``."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from .db import Engine, api_tokens, from_us, now_us
from .values import check_name, has_nul

KEY_PREFIX = "dg_"


@dataclass(frozen=True)
class TokenInfo:
    """A token's record (never the key).

    Attributes:
        id: token id. name: label. read_only: refused on write endpoints.
        created_at / revoked_at: ISO-8601 UTC strings (revoked_at None while active).
    """

    id: int
    name: str
    read_only: bool
    created_at: str
    revoked_at: str | None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_token(engine: Engine, name: str, read_only: bool = False) -> str:
    """Create a token and return its key (shown once, not recoverable).

    Raises:
        ValueError: a name that is empty, longer than 255 characters or contains NUL, or an
            active token with this name exists.
    """
    check_name("token", name)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with engine.write() as conn:
        if engine.dialect == "postgresql":
            # concurrent creations take turns (no unique index can cover only active tokens
            # of existing databases); SQLite write transactions are serialised already
            conn.execute(sa.text(f"LOCK TABLE {api_tokens.name} IN SHARE ROW EXCLUSIVE MODE"))
        active = conn.execute(
            sa.select(api_tokens.c.id).where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
        ).first()
        if active is not None:
            raise ValueError(f"an active token named {name!r} exists")
        conn.execute(
            sa.insert(api_tokens).values(name=name, key_hash=_hash(key), read_only=read_only, created_at=now_us())
        )
    return key


def list_tokens(engine: Engine, include_revoked: bool = False) -> list[TokenInfo]:
    """Tokens by id (active only unless ``include_revoked``)."""
    stmt = sa.select(api_tokens).order_by(api_tokens.c.id)
    if not include_revoked:
        stmt = stmt.where(api_tokens.c.revoked_at.is_(None))
    with engine.read() as conn:
        rows = conn.execute(stmt).all()
    return [
        TokenInfo(
            r.id,
            r.name,
            bool(r.read_only),
            from_us(r.created_at).isoformat(),
            None if r.revoked_at is None else from_us(r.revoked_at).isoformat(),
        )
        for r in rows
    ]


def revoke_token(engine: Engine, name: str) -> int:
    """Revoke the active token(s) named ``name``.

    Returns:
        Number revoked.

    Raises:
        KeyError: no active token with that name.
    """
    if has_nul(name):
        raise KeyError(f"no active token named {name!r}")
    with engine.write() as conn:
        n = conn.execute(
            sa.update(api_tokens)
            .where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now_us())
        ).rowcount
    if not n:
        raise KeyError(f"no active token named {name!r}")
    return int(n)


def verify_token(engine: Engine, key: str) -> TokenInfo | None:
    """The active token with this key, or None."""
    with engine.read() as conn:
        r = conn.execute(
            sa.select(api_tokens).where(api_tokens.c.key_hash == _hash(key), api_tokens.c.revoked_at.is_(None))
        ).first()
    if r is None:
        return None
    return TokenInfo(r.id, r.name, bool(r.read_only), from_us(r.created_at).isoformat(), None)
