"""The engine's HTTP server (FastAPI): the dataroom image API plus engine queries.

Endpoints (JSON; errors are ``{"error": message, "status": code}``, never a stack trace):

- ``GET /api/images/``: dataroom image listing. Parameters: ``page_size`` (1..2000, default
  100), ``cursor``, ``fields``, ``sources``, ``sources__ne``, ``tags`` (any of), ``tags__all``,
  ``tags__ne`` (none of), ``tags__ne_all`` (not all of), ``tags__empty`` (true/false),
  ``attributes=name__op:value,...`` (ops eq ne gt gte lt lte contains icontains),
  ``has_attributes``, ``lacks_attributes``, ``has_masks``, ``lacks_masks``, ``has_latents``,
  ``lacks_latents``, ``return_latents``, ``short_edge__gte/lte``, ``pixel_count__gte/lte``,
  ``duplicate_state`` (int, or ``None``), ``partitions_count`` + ``partition`` (datapoints with
  ``id % partitions_count == partition``), and the extensions ``query`` (an engine query in
  JSON, AND-ed with the rest) and ``as_of`` (µs since the epoch). Answers ``{"next": absolute
  URL or null, "results": [...]}`` (see :mod:`datago.engine.dataroom` for the result shape).
- ``GET /api/images/random/``: the same in a seeded random order (``seed``; a random one is
  chosen and kept in ``next`` when absent).
- ``GET /api/images/count/``: ``{"count": n}`` for the same filters.
- ``POST /api/query``: body ``{"datasource": name | "sources": [names], "query": engine query,
  "select": [fields], "as_of": µs, "page_size", "cursor", "fields", "return_latents",
  "partitions_count", "partition", "random": bool, "seed"}``; same answer as ``/api/images/``.
  ``next`` carries the cursor in its query string: POST the same body to it.
- ``POST /api/query/count/``: ``{"count": n}`` for such a body.
- ``GET /api/datasources/``: names, roots, datapoint counts and fields.
- ``POST /api/datasources/{name}/metadata`` (write): ``{"updates": [{"path": p, "metadata":
  {...}}]}``; datetimes as ``{"$datetime": iso}``, bytes as ``{"$bytes": base64}``.
- ``POST /api/datasources/{name}/scan`` (write): register new files; ``{"added": n}``.
- ``GET /files/{datasource_id}/{path}?exp=&sig=``, ``GET /blobs/{sha256}?exp=&sig=``: signed,
  expiring, no token needed (403 bad/expired signature, 404 for paths that would leave the
  root or do not exist).
- ``GET /api/health``: ``{"ok": true}``, no token.

Auth: ``Authorization: Token <key>`` (keys from ``datago token create``); 401 without a valid
token, 403 for a read-only token on a write endpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import mimetypes
import os
import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import sqlalchemy as sa
from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import dataroom, writes
from .dataroom import ApiError, Renderer, wanted_fields
from .datasource import Datasource
from .db import Engine, datapoints, datasources, fields, get_engine
from .executor import PageSpec, count, page_rows
from .query import Query
from .scan import file_url as http_file_url
from .scan import is_http, local_file, safe_relpath
from .signing import verify
from .tokens import TokenInfo, create_token, revoke_token, verify_token
from .values import check_field_name, decode_json, has_nul

log = logging.getLogger("datago.engine.server")

QUERY_BODY_KEYS = (
    "datasource",
    "sources",
    "sources__ne",
    "query",
    "select",
    "as_of",
    "page_size",
    "cursor",
    "fields",
    "return_latents",
    "partitions_count",
    "partition",
    "random",
    "seed",
)


try:  # optional, several times faster for large pages
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None


def _dumps(payload: Any) -> bytes:
    if _orjson is not None:
        return _orjson.dumps(payload)
    return json.dumps(payload, separators=(",", ":")).encode("ascii")


class Prefetcher:
    """Pages computed ahead: after answering a page, the server computes the next one in a worker
    thread while the client takes the current one (the database work overlaps the client's).

    A computed page is used once, only for the same request (path, parameters, body, base URL,
    cursor), within ``ttl`` seconds, and only if this process wrote nothing in between (see
    :attr:`Engine.write_generation`); writes by other processes can make it up to ``ttl`` seconds
    old.
    """

    def __init__(self, ttl: float = 10.0, max_entries: int = 16, workers: int = 2) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="datago-prefetch")
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[Any, ...], tuple[float, int, Future[Any]]] = OrderedDict()

    def take(self, key: tuple[Any, ...], generation: int) -> Any:
        """The prefetched result for ``key`` (waiting for it if still running), or None."""
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is None:
            return None
        deadline, gen, fut = entry
        if gen != generation or time.monotonic() > deadline:
            fut.cancel()
            return None
        try:
            return fut.result(timeout=300)
        except Exception:  # computed again by the caller, which reports errors
            return None

    def schedule(self, key: tuple[Any, ...], generation: int, fn: Callable[[], Any]) -> None:
        """Start computing ``fn()`` for ``key`` in a worker thread."""
        with self._lock:
            if key in self._entries:
                return
            try:
                fut = self._pool.submit(fn)
            except RuntimeError:  # shut down
                return
            self._entries[key] = (time.monotonic() + self.ttl, generation, fut)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)[1][2].cancel()

    def shutdown(self) -> None:
        """Stop the worker threads (pending computations are cancelled)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


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
    app = FastAPI(title="datago engine", version="1")
    app.state.engine = engine
    prefetch = Prefetcher()
    app.state.prefetch = prefetch
    public = public_url.rstrip("/") if public_url else None

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

    def auth(request: Request, write: bool = False) -> TokenInfo:
        header = request.headers.get("authorization", "").strip()
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

    def base_url(request: Request) -> str:
        return public or str(request.base_url).rstrip("/")

    roots_cache: dict[str, Any] = {"at": 0.0, "generation": -1, "roots": {}}

    def roots(refresh: bool = False) -> dict[int, str]:
        """Datasource id -> root, re-read after a write through this engine, every ROOT_CACHE_S
        seconds, or when asked (a query per page or per file would cost a tenth of serving it)."""
        now = time.monotonic()
        c = roots_cache
        if refresh or c["generation"] != engine.write_generation or now - c["at"] >= ROOT_CACHE_S:
            generation = engine.write_generation
            with engine.read() as conn:
                fresh = {i: r for i, r in conn.execute(sa.select(datasources.c.id, datasources.c.root))}
            c.update(at=now, generation=generation, roots=fresh)
        return c["roots"]

    def root_of(ds_id: int) -> str | None:
        """The root of a datasource (None if there is none); an id the cache does not know yet
        (a datasource made by another process) re-reads the roots once."""
        root = roots().get(ds_id)
        return root if root is not None else roots(refresh=True).get(ds_id)

    def renderer(base: str) -> Renderer:
        return Renderer(base, engine.secret(), roots(), url_ttl, engine.blobs.get)

    def run_page(
        request: Request,
        spec: PageSpec,
        want: set[str],
        return_latents: set[str] | None,
        next_params: Mapping[str, Any],
        body_key: str = "",
    ) -> Response:
        base = base_url(request)
        path = request.url.path
        query = {k: v for k, v in request.query_params.items() if k != "cursor"}
        query.update({k: str(v) for k, v in next_params.items()})
        key_base = (path, tuple(sorted(query.items())), body_key, base)

        def compute(cursor: str | None) -> tuple[bytes, str | None]:
            raw = page_rows(engine, dataclasses.replace(spec, cursor=cursor))
            results = renderer(base).render_page(raw, want, return_latents)
            nxt = None
            if raw.next_cursor:
                nxt = f"{base}{path}?{urlencode({**query, 'cursor': raw.next_cursor})}"
            return _dumps({"next": nxt, "results": results}), raw.next_cursor

        generation = engine.write_generation
        result = prefetch.take((*key_base, spec.cursor), generation)
        if result is None:
            try:
                result = compute(spec.cursor)
            except ValueError as e:
                raise ApiError(400, str(e)) from None
        body, cursor = result
        if cursor:  # compute the next page while the client takes this one
            prefetch.schedule((*key_base, cursor), generation, functools.partial(compute, cursor))
        return Response(body, media_type="application/json")

    def params_of(request: Request) -> dict[str, str]:
        return dict(request.query_params)

    def image_page(request: Request, random: bool) -> Response:
        auth(request)
        params = params_of(request)
        spec = dataroom.spec_from_params(params, random=random)
        want = wanted_fields(params.get("fields"))
        rl = set(dataroom.csv_list(params.get("return_latents"))) or None
        return run_page(request, spec, want, rl, {"seed": spec.seed} if random else {})

    @app.get("/api/health")
    def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/api/images/")
    def images(request: Request) -> Response:
        return image_page(request, random=False)

    @app.get("/api/images/random/")
    def images_random(request: Request) -> Response:
        return image_page(request, random=True)

    @app.get("/api/images/count/")
    def images_count(request: Request) -> dict[str, int]:
        auth(request)
        spec = dataroom.spec_from_params(params_of(request))
        return {"count": count(engine, spec)}

    def spec_from_body(
        body: Mapping[str, Any], cursor: str | None, seed_param: str | None = None
    ) -> tuple[PageSpec, set[str], set[str] | None]:
        """The page of a POST body; ``cursor`` and ``seed_param`` come from the query string of a
        ``next`` URL (the seed chosen for the first page when the body has none)."""
        if not isinstance(body, Mapping):
            raise ApiError(400, "the body must be a JSON object")
        unknown = sorted(set(body) - set(QUERY_BODY_KEYS))
        if unknown:
            raise ApiError(400, f"unknown key(s) {', '.join(unknown)}; known: {', '.join(QUERY_BODY_KEYS)}")
        sources = body.get("sources")
        if body.get("datasource") is not None:
            sources = [body["datasource"]]
        if sources is not None and (not isinstance(sources, list) or not all(isinstance(s, str) for s in sources)):
            raise ApiError(400, "sources must be a list of datasource names")
        exclude = body.get("sources__ne")
        if exclude is not None and (not isinstance(exclude, list) or not all(isinstance(s, str) for s in exclude)):
            raise ApiError(400, "sources__ne must be a list of datasource names")
        try:
            q = None if body.get("query") is None else Query.from_dict(body["query"])
            select = body.get("select")
            if select is not None:
                if not isinstance(select, list):
                    raise ValueError("select must be a list of field names")
                select = [check_field_name(s) for s in select]
        except (TypeError, ValueError) as e:
            raise ApiError(400, f"invalid query: {e}") from None
        spec = PageSpec(source_names=sources, exclude_source_names=exclude, query=q, select=select)
        paging = {
            k: body[k]
            for k in ("page_size", "cursor", "partitions_count", "partition", "as_of")
            if body.get(k) is not None
        }
        if cursor:
            paging["cursor"] = cursor
        dataroom.paging_from_params(paging, spec)
        if dataroom.bool_param(body, "random"):
            seed = dataroom.int_param(body, "seed", minimum=0)
            if seed is None:
                seed = dataroom.int_param({"seed": seed_param}, "seed", minimum=0)
            spec.seed = seed if seed is not None else secrets.randbelow(2**31)
        fields_param = body.get("fields")
        if isinstance(fields_param, list):
            fields_param = ",".join(str(f) for f in fields_param)
        if fields_param is not None and not isinstance(fields_param, str):
            raise ApiError(400, "fields must be a list of result keys or a comma-separated str")
        want = wanted_fields(fields_param)
        rl = body.get("return_latents")
        if isinstance(rl, str):
            rl = dataroom.csv_list(rl)
        if rl is not None and (not isinstance(rl, list) or not all(isinstance(t, str) for t in rl)):
            raise ApiError(400, "return_latents must be a list of latent types or a comma-separated str")
        return spec, want, (set(rl) if rl else None)

    @app.post("/api/query")
    def query(request: Request, body: dict[str, Any] = Body(...)) -> Response:  # noqa: B008
        auth(request)
        params = request.query_params
        spec, want, rl = spec_from_body(body, params.get("cursor"), params.get("seed"))
        seed = {"seed": spec.seed} if spec.seed is not None else {}
        return run_page(request, spec, want, rl, seed, json.dumps(body, sort_keys=True, default=str))

    @app.post("/api/query/count/")
    def query_count(request: Request, body: dict[str, Any] = Body(...)) -> dict[str, int]:  # noqa: B008
        auth(request)
        spec, _, _ = spec_from_body(body, None)
        return {"count": count(engine, spec)}

    @app.get("/api/datasources/")
    def list_datasources(request: Request) -> list[dict[str, Any]]:
        auth(request)
        with engine.read() as conn:
            n = dict(
                conn.execute(
                    sa.select(datapoints.c.datasource_id, sa.func.count()).group_by(datapoints.c.datasource_id)
                ).all()
            )
            fs: dict[int, dict[str, str]] = {}
            for ds_id, name, ftype in conn.execute(sa.select(fields.c.datasource_id, fields.c.name, fields.c.type)):
                fs.setdefault(ds_id, {})[name] = ftype
            rows = conn.execute(sa.select(datasources).order_by(datasources.c.name)).all()
        return [
            {"id": r.id, "name": r.name, "root": r.root, "datapoints": n.get(r.id, 0), "fields": fs.get(r.id, {})}
            for r in rows
        ]

    def datasource(name: str) -> Datasource:
        if has_nul(name):  # never stored
            raise ApiError(404, f"no datasource named {name!r}")
        with engine.read() as conn:
            row = conn.execute(sa.select(datasources).where(datasources.c.name == name)).first()
        if row is None:
            raise ApiError(404, f"no datasource named {name!r}")
        return Datasource(engine, row.id, row.name, row.root)

    @app.post("/api/datasources/{name}/metadata")
    def post_metadata(request: Request, name: str, body: dict[str, Any] = Body(...)) -> dict[str, int]:  # noqa: B008
        auth(request, write=True)
        ds = datasource(name)
        items = body.get("updates")
        if not isinstance(items, list):
            raise ApiError(400, 'expected {"updates": [{"path": ..., "metadata": {...}}]}')
        updates = []
        try:
            for item in items:
                if (
                    not isinstance(item, dict)
                    or not isinstance(item.get("path"), str)
                    or not isinstance(item.get("metadata"), dict)
                ):
                    raise ValueError('each update is {"path": str, "metadata": {...}}')
                updates.append((item["path"], {k: decode_json(v) for k, v in item["metadata"].items()}))
            return {"updated": writes.write_metadata(engine, ds.id, updates)}
        except (TypeError, ValueError) as e:
            raise ApiError(400, str(e)) from None
        except KeyError as e:
            raise ApiError(400, str(e.args[0]) if e.args else "unknown path") from None

    @app.post("/api/datasources/{name}/scan")
    def post_scan(request: Request, name: str) -> dict[str, int]:
        auth(request, write=True)
        ds = datasource(name)
        try:
            return {"added": ds.scan(progress=False)}
        except OSError as e:
            raise ApiError(400, f"cannot scan {ds.root!r}: {e.strerror or e}") from None
        except httpx.HTTPError as e:  # an http root that cannot be listed
            raise ApiError(502, f"cannot scan {ds.root!r}: {e}") from None

    def resolve_file(ds_id: str, path: str, exp: str | None, sig: str | None) -> str | os.PathLike[str] | Response:
        """The local file a signed /files/ URL names, or a redirect for an http root.

        Raises:
            ApiError: 404 for a path that would leave the root or does not exist, 403 for a
                bad or expired signature.
        """
        try:
            safe_relpath(path)
        except ValueError:
            raise ApiError(404, "not found") from None
        if not ds_id.isdigit():
            raise ApiError(404, "not found")
        reason = verify(engine.secret(), "file", ds_id, path, exp, sig)
        if reason:
            raise ApiError(403, reason)
        root = root_of(int(ds_id))
        if root is None:
            raise ApiError(404, "not found")
        if is_http(root):
            return RedirectResponse(http_file_url(root, path))
        full = local_file(root, path)
        if full is None:
            raise ApiError(404, "not found")
        return full

    @app.get("/files/{ds_id}/{path:path}")
    def get_file(request: Request, ds_id: str, path: str, exp: str | None = None, sig: str | None = None) -> Response:
        target = resolve_file(ds_id, path, exp, sig)
        return target if isinstance(target, Response) else file_response(target, request.headers)

    def fast_file(scope: Mapping[str, Any]) -> Response | None:
        """The answer to a plain GET of a small local file, or None for anything else (errors,
        Range, redirects, large files, repeated parameters), which the get_file route answers."""
        if scope["method"] != "GET" or any(k == b"range" for k, _ in scope["headers"]):
            return None
        ds_id, sep, path = scope["path"][len("/files/") :].partition("/")
        params = parse_qs(scope["query_string"].decode("latin-1"))
        if not sep or any(len(v) != 1 for v in params.values()):
            return None
        try:
            target = resolve_file(ds_id, path, params.get("exp", [None])[0], params.get("sig", [None])[0])
            if isinstance(target, Response) or os.stat(target).st_size > FAST_FILE_BYTES:
                return None
            return file_response(target, {})
        except (ApiError, OSError):
            return None

    class FileFastPath:
        """Serves small local files straight from ASGI, before FastAPI's routing, parameter
        validation and thread pool, which cost more than the file itself (the db source fetches
        one per sample). Reads happen on the event loop, so only files up to FAST_FILE_BYTES."""

        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"].startswith("/files/"):
                response = fast_file(scope)
                if response is not None:
                    await response(scope, receive, send)
                    return
            await self.app(scope, receive, send)

    app.add_middleware(FileFastPath)

    @app.get("/blobs/{sha256}")
    def get_blob(sha256: str, exp: str | None = None, sig: str | None = None) -> Response:
        reason = verify(engine.secret(), "blob", sha256, "", exp, sig)
        if reason:
            raise ApiError(403, reason)
        try:
            path = engine.blobs.path_for(sha256)
        except ValueError:
            raise ApiError(404, "not found") from None
        if not path.is_file():
            raise ApiError(404, "not found")
        return FileResponse(path, media_type="application/octet-stream")

    return app


# How long get_file trusts a cached datasource root (seconds).
ROOT_CACHE_S = 5.0
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
) -> None:
    """Serve in the foreground until interrupted (``datago serve``)."""
    import uvicorn

    uvicorn.run(create_app(db, url_ttl=url_ttl, public_url=public_url), host=host, port=port, log_level="info")
