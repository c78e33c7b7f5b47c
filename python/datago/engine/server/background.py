"""Server: running the application with uvicorn, in the foreground (:func:`run`, ``datago
serve``) or in a daemon thread of this process (:func:`serve_in_background`)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterable

from ..db import Engine, get_engine
from ..tokens import create_token, revoke_token
from .app import create_app
from .context import STATEMENT_TIMEOUT_S
from .guard import MAX_BODY_BYTES


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when the listening
    # socket says TCP; without it every response waits ~40 ms (Nagle + delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def serve_in_background(
    engine_or_db_url: Engine | str | os.PathLike[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    read_only: bool = False,
    url_ttl: int = 3600,
) -> tuple[str, str, Callable[[], None]]:
    """Run the server with uvicorn in a daemon thread.

    Args:
        engine_or_db_url: the engine, a storage URL or a SQLite path (default storage if None).
        host: address to bind (default loopback).
        port: TCP port; 0 picks a free one.
        read_only: make the API key read-only.
        url_ttl: lifetime of signed URLs in seconds.

    Returns:
        ``(base_url, api_key, stop)``: the server's base URL (``http://host:port``), a fresh API
        key for it, and a function that stops the server and revokes the key.

    Raises:
        OSError: the address cannot be bound.
        RuntimeError: the server did not start within 30 s.
    """
    import uvicorn

    engine = get_engine(engine_or_db_url)
    app = create_app(engine, url_ttl=url_ttl)
    sock = _bind(host, port)
    actual_port = sock.getsockname()[1]
    token_name = f"background-{os.getpid()}-{actual_port}-{time.time_ns()}"
    key = create_token(engine, token_name, read_only=read_only)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="datago-engine-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            app.state.prefetch.shutdown()
            revoke_token(engine, token_name)
            raise RuntimeError("the engine server did not start")
        time.sleep(0.01)
    shown = f"[{host}]" if ":" in host else host
    base_url = f"http://{shown}:{actual_port}"
    stopped = threading.Event()

    def stop() -> None:
        if stopped.is_set():
            return
        stopped.set()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        app.state.prefetch.shutdown()
        try:
            revoke_token(engine, token_name)
        except Exception:  # the database may be gone already
            pass

    return base_url, key, stop


def run(
    db: Engine | str | None,
    host: str = "127.0.0.1",
    port: int = 8000,
    url_ttl: int = 3600,
    public_url: str | None = None,
    *,
    allowed_hosts: Iterable[str] | str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    statement_timeout_s: float | None = STATEMENT_TIMEOUT_S,
) -> None:
    """Serve in the foreground until interrupted (``datago serve``); the options are
    :func:`~datago.engine.server.create_app`'s.

    Raises:
        ValueError: a malformed option (naming it).
    """
    import uvicorn

    app = create_app(
        db,
        url_ttl=url_ttl,
        public_url=public_url,
        allowed_hosts=allowed_hosts,
        max_body_bytes=max_body_bytes,
        statement_timeout_s=statement_timeout_s,
    )
    uvicorn.run(app, host=host, port=port, log_level="info")
