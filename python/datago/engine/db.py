"""Storage: the :class:`Engine` handle (a database with the :mod:`~datago.engine.schema` tables
plus a :class:`~datago.engine.blobs.BlobStore`) and the shared engines per URL.

The schema's tables and time helpers are re-exported here (``from datago.engine.db import
datapoints, now_us``).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.pool import StaticPool

from .blobs import BlobStore
from .schema import (
    UTCDateTime,
    api_tokens,
    datapoints,
    datasets,
    datasources,
    fields,
    from_us,
    metadata_values,
    now_us,
    schema,
    settings,
    to_us,
)
from .values import QueryError

__all__ = [
    "BLOB_DIR_ENV",
    "DEFAULT_DB_ENV",
    "SERVER_URL_ENV",
    "BackgroundStarter",
    "BlobStore",
    "Engine",
    "UTCDateTime",
    "api_tokens",
    "chunks",
    "datapoints",
    "datasets",
    "datasources",
    "default_db_url",
    "fields",
    "from_us",
    "get_engine",
    "metadata_values",
    "normalize_db_url",
    "now_us",
    "schema",
    "set_background_starter",
    "settings",
    "to_us",
]

#: the engine's logger: at DEBUG every SQL statement with its parameters, duration (ms) and row
#: count (``logging.basicConfig(level=logging.DEBUG)`` shows them)
log = logging.getLogger("datago.engine")

DEFAULT_DB_ENV = "DATAGO_ENGINE_DB"
#: base URL of a ``datago serve`` on the same database (``http://host:8000``): datapoint download
#: URLs are then signed URLs it serves (see :attr:`Engine.server_url`)
SERVER_URL_ENV = "DATAGO_SERVER_URL"
BLOB_DIR_ENV = "DATAGO_ENGINE_BLOBS"
#: SQLite checks the statement timeout of :meth:`Engine.read` every this many virtual machine
#: instructions (a few milliseconds of work; checking costs well under 1 % of it)
SQLITE_PROGRESS_OPS = 10000

# SQLite errors a statement causes by its size or shape (its parser, expression, variable and
# join limits), not by the database's state
_SQLITE_LIMIT_ERRORS = (
    "parser stack overflow",
    "expression tree is too large",
    "too many sql variables",
    "too many terms",
    "at most 64 tables",
    "too many from clause terms",
    "string or blob too big",
    "pattern too complex",
    "too many columns",
)


def query_error(exc: BaseException, timeout_s: float | None = None) -> QueryError | None:
    """The :class:`QueryError` for a database error that the statement caused (its size or shape
    over a database limit, or its run over the statement timeout ``timeout_s``), None for other
    errors (the database's state, a lost connection: not the client's doing).

    SQLite: its limit messages and ``interrupted`` (the timeout's progress handler). PostgreSQL:
    SQLSTATE class 54 (program limit exceeded, e.g. statement too complex), 57014 (query
    canceled: ``statement_timeout``) and class 22 (data exceptions, e.g. a value out of range).
    """
    orig = getattr(exc, "orig", exc)
    message = str(orig).strip().split("\n")[0]
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    timeout = "the query was stopped"
    if timeout_s:
        timeout = f"the query ran longer than the statement timeout ({timeout_s:g} s)"
    timeout += ": narrow it (fewer or simpler conditions, fewer datasources) or raise the server's --statement-timeout"
    if isinstance(state, str):
        if state == "57014":
            return QueryError(timeout)
        if state.startswith("54"):
            return QueryError(f"the database cannot run this query: {message}: simplify it")
        if state.startswith("22"):
            return QueryError(f"the database refused a value of this query: {message}")
        return None
    if type(orig).__name__ != "OperationalError" or type(orig).__module__ != "sqlite3":
        return None
    lowered = message.lower()
    if lowered == "interrupted":
        return QueryError(timeout)
    if any(m in lowered for m in _SQLITE_LIMIT_ERRORS):
        return QueryError(f"the database cannot run this query: {message}: simplify it")
    return None


def default_db_url() -> str:
    """The default storage URL: ``$DATAGO_ENGINE_DB`` (a SQLAlchemy URL or a file path) or the
    SQLite file ``~/.cache/datago/engine.sqlite``."""
    value = os.environ.get(DEFAULT_DB_ENV) or str(Path.home() / ".cache" / "datago" / "engine.sqlite")
    return normalize_db_url(value)


def normalize_db_url(value: str | os.PathLike[str]) -> str:
    """Turn a plain file path into a ``sqlite:///`` URL; ``postgresql://`` gets the psycopg 3
    driver; other URLs are returned unchanged."""
    value = os.fspath(value)
    if "://" not in value:
        return "sqlite:///" + str(Path(value).expanduser().resolve())
    if value.startswith("postgresql://") or value.startswith("postgres://"):
        return "postgresql+psycopg://" + value.split("://", 1)[1]
    return value


class Engine:
    """A connection to one engine database (SQLite file or PostgreSQL) and its blob store.

    Tables are created if missing. Engines are cheap to share between threads; get the shared
    one for a URL with :func:`get_engine`.

    Args:
        db_url: SQLAlchemy URL (``sqlite:///path``, ``postgresql+psycopg://user:pw@host/db``) or
            a SQLite file path; default :func:`default_db_url`.
        blob_dir: blob store folder; default ``$DATAGO_ENGINE_BLOBS``, else next to a SQLite file
            (``<file>.blobs``), else for an in-memory SQLite database a temporary folder (removed by
            :meth:`dispose`), else ``~/.cache/datago/blobs``.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database cannot be reached or the schema created.
    """

    def __init__(
        self, db_url: str | os.PathLike[str] | None = None, blob_dir: str | os.PathLike[str] | None = None
    ) -> None:
        self.url = normalize_db_url(db_url) if db_url is not None else default_db_url()
        url = sa.engine.make_url(self.url)
        self.dialect = url.get_backend_name()
        kwargs: dict[str, Any] = {}
        memory = False
        if self.dialect == "sqlite":
            database = url.database or ""
            memory = database in ("", ":memory:")
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 60}
            if memory:
                kwargs["poolclass"] = StaticPool
            else:
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs["pool_pre_ping"] = True
            kwargs["pool_size"] = 8
            kwargs["max_overflow"] = 16
        self.sa = sa.create_engine(self.url, **kwargs)
        _log_statements(self.sa)
        if self.dialect == "sqlite":
            self._setup_sqlite(memory)
        elif self.dialect == "postgresql":
            self._setup_postgresql()
        if blob_dir is None:
            blob_dir = os.environ.get(BLOB_DIR_ENV) or None
        #: a temporary blob folder of this engine's own, removed by :meth:`dispose`
        self._temp_blob_dir: str | None = None
        if blob_dir is None:
            if self.dialect == "sqlite" and not memory:
                blob_dir = str(Path(url.database or "").expanduser()) + ".blobs"
            elif memory:
                blob_dir = self._temp_blob_dir = tempfile.mkdtemp(prefix="datago-blobs-")
            else:
                blob_dir = Path.home() / ".cache" / "datago" / "blobs"
        self.blobs = BlobStore(blob_dir)
        self._secret: bytes | None = None
        #: base URL of a server for this database (``datago serve``; default
        #: ``$DATAGO_SERVER_URL``): datapoints' ``download_url`` are then signed URLs of that server
        #: (it accepts them: the signing secret lives in the database); None: ``file://`` URLs
        #: for local roots, the file's URL for http roots
        self.server_url: str | None = os.environ.get(SERVER_URL_ENV) or None
        #: incremented after every write transaction committed through this engine (the server
        #: drops pages it computed ahead when it changes)
        self.write_generation = 0
        self._generation_lock = threading.Lock()  # += from several threads could go back
        self._background: tuple[str, str, Any] | None = None
        self._lock = threading.Lock()
        self._secret_lock = threading.Lock()
        # an in-memory database is one connection (StaticPool) that threads must take in turn
        self._memory_lock: Any = threading.RLock() if memory else contextlib.nullcontext()
        schema.create_all(self.sa)

    def _setup_sqlite(self, memory: bool) -> None:
        @sa.event.listens_for(self.sa, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
            cur = dbapi_conn.cursor()
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA mmap_size=1073741824")  # reads without a syscall + copy per page
            cur.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache per connection
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @sa.event.listens_for(self.sa, "begin")
        def _on_begin(conn: Connection) -> None:
            # writers take the write lock up front, so a read-then-write transaction never fails
            # with SQLITE_BUSY on lock upgrade; readers stay concurrent (WAL).
            write = conn.get_execution_options().get("datago_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    def _setup_postgresql(self) -> None:
        @sa.event.listens_for(self.sa, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # index look-ups are cheap on SSDs and cached data: without this the planner prefers
            # scanning the whole metadata table to fetch a page's metadata (50 ms vs 6 ms)
            with dbapi_conn.cursor() as cur:
                cur.execute("SET random_page_cost = 1.1")
            dbapi_conn.commit()

    def analyze(self, *tables: sa.Table) -> None:
        """Refresh the planner statistics of engine tables after bulk writes (PostgreSQL; a no-op
        elsewhere). Table names come from the schema, never from input."""
        if self.dialect != "postgresql":
            return
        with self.sa.connect() as conn:
            for table in tables:
                conn.execute(sa.text(f"ANALYZE {table.name}"))
            conn.commit()

    def __repr__(self) -> str:
        return f"Engine({sa.engine.make_url(self.url).render_as_string(hide_password=True)!r})"

    @contextlib.contextmanager
    def read(self, timeout_s: float | None = None) -> Iterator[Connection]:
        """A connection in a read transaction (rolled back at the end).

        Args:
            timeout_s: stop the block's statements once it has run this many seconds (SQLite: a
                progress handler interrupts the statement; PostgreSQL: ``SET LOCAL
                statement_timeout``, per statement); None: no limit.

        Raises:
            QueryError: a statement over the timeout, or one the database refused for its size
                or shape (see :func:`query_error`); other database errors pass through.
        """
        with self._memory_lock, self.sa.connect() as conn:
            dbapi: Any = None
            try:
                if timeout_s is not None and self.dialect == "sqlite":
                    dbapi = conn.connection.dbapi_connection
                    deadline = time.monotonic() + timeout_s
                    dbapi.set_progress_handler(lambda: time.monotonic() > deadline, SQLITE_PROGRESS_OPS)
                elif timeout_s is not None and self.dialect == "postgresql":
                    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, round(timeout_s * 1000))}")
                yield conn
            except sa.exc.DBAPIError as e:
                err = query_error(e, timeout_s)
                if err is None:
                    raise
                raise err from e
            finally:
                if dbapi is not None:
                    dbapi.set_progress_handler(None, 0)

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A connection in a write transaction: committed when the block exits normally, rolled
        back (nothing written) when it raises."""
        with self._memory_lock, self.sa.connect() as conn:
            conn = conn.execution_options(datago_write=True)
            with conn.begin():
                yield conn
        with self._generation_lock:
            self.write_generation += 1

    def secret(self) -> bytes:
        """The HMAC secret for signed URLs, created once and stored in the ``settings`` table."""
        if self._secret is None:
            with self._secret_lock:
                if self._secret is None:
                    self._secret = bytes.fromhex(self._read_or_create_secret())
        return self._secret

    def _read_or_create_secret(self) -> str:
        select = sa.select(settings.c.value).where(settings.c.key == "url_secret")
        with self.read() as conn:
            value = conn.execute(select).scalar()
        if value is not None:
            return str(value)
        try:
            with self.write() as conn:
                value = conn.execute(select).scalar()
                if value is None:
                    value = secrets.token_hex(32)
                    conn.execute(sa.insert(settings).values(key="url_secret", value=value))
        except sa.exc.IntegrityError:  # another process created it meanwhile (PostgreSQL)
            with self.read() as conn:
                value = conn.execute(select).scalar_one()
        return str(value)

    def drop_all(self) -> None:
        """Drop every engine table and recreate them empty (tests and resets). Blobs stay."""
        schema.drop_all(self.sa)
        schema.create_all(self.sa)
        self._secret = None

    def background_server(self) -> tuple[str, str]:
        """``(base_url, api_key)`` of a server for this engine running in this process on
        127.0.0.1, started on first use (see :func:`datago.engine.serve_in_background`) with a
        read-only key of its own, and stopped (its key revoked) by :meth:`dispose` or at exit.

        Storage does not know the server: the starter is installed by a layer above it
        (:func:`set_background_starter`, done when :mod:`datago.engine` is imported).

        Raises:
            OSError, RuntimeError: the server cannot start (RuntimeError too when no starter is
                installed).
        """
        with self._lock:
            if self._background is None:
                if _background_starter is None:
                    raise RuntimeError("no background server starter installed (import datago.engine)")
                self._background = _background_starter(self)
                atexit.register(self._stop_background)
            return self._background[0], self._background[1]

    def _stop_background(self) -> None:
        with self._lock:
            if self._background is not None:
                self._background[2]()
                self._background = None
        atexit.unregister(self._stop_background)

    def dispose(self) -> None:
        """Stop the background server if any and close pooled connections; the temporary blob
        folder of an in-memory database (whose data is gone with its connection) is removed."""
        self._stop_background()
        self.sa.dispose()
        with _engines_lock:
            if _engines.get(self.url) is self:
                del _engines[self.url]
        if self._temp_blob_dir is not None:
            shutil.rmtree(self._temp_blob_dir, ignore_errors=True)
            self._temp_blob_dir = None


def _short(parameters: Any, limit: int = 300) -> str:
    text = repr(parameters)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def _log_statements(sa_engine: sa.engine.Engine) -> None:
    """Log every statement of ``sa_engine`` on :data:`log` at DEBUG: its SQL on one line, its
    parameters (shortened), its duration in ms and the cursor's row count. Costs one level check
    per statement when DEBUG is off."""

    @sa.event.listens_for(sa_engine, "before_cursor_execute")
    def _before(conn: Connection, _cursor: Any, _stmt: str, _params: Any, _ctx: Any, _many: bool) -> None:
        if log.isEnabledFor(logging.DEBUG):
            conn.info.setdefault("datago_sql_start", []).append(time.perf_counter())

    @sa.event.listens_for(sa_engine, "after_cursor_execute")
    def _after(conn: Connection, cursor: Any, statement: str, parameters: Any, _ctx: Any, many: bool) -> None:
        starts = conn.info.get("datago_sql_start")
        if not starts:
            return
        ms = (time.perf_counter() - starts.pop()) * 1000
        rows = getattr(cursor, "rowcount", -1)
        log.debug(
            "SQL %.2f ms, rowcount %s%s: %s | parameters: %s",
            ms,
            rows,
            " (executemany)" if many else "",
            " ".join(statement.split()),
            _short(parameters),
        )


#: ``engine -> (base_url, api_key, stop)``: starts a server for ``engine`` (see
#: :meth:`Engine.background_server`); installed by the server's side, never imported from here
BackgroundStarter = Callable[["Engine"], tuple[str, str, Callable[[], None]]]
_background_starter: BackgroundStarter | None = None


def set_background_starter(starter: BackgroundStarter | None) -> None:
    """Install the function :meth:`Engine.background_server` starts a server with (the package
    :mod:`datago.engine` installs :func:`datago.engine.server.serve_in_background` with a
    read-only key); None removes it."""
    global _background_starter
    _background_starter = starter


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def get_engine(db: Engine | str | os.PathLike[str] | None = None) -> Engine:
    """The shared :class:`Engine` for a URL or path (default :func:`default_db_url`); an
    :class:`Engine` is returned as is."""
    if isinstance(db, Engine):
        return db
    url = normalize_db_url(db) if db is not None else default_db_url()
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = Engine(url)
            _engines[url] = engine
        return engine


def chunks(items: list[Any], size: int = 500) -> Iterator[list[Any]]:
    """Consecutive slices of ``items`` of at most ``size`` (bound-parameter limits)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
