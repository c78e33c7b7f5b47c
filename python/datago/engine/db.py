"""Storage: the SQL schema (SQLAlchemy Core), the :class:`Engine` handle and the blob store.

Tables (all timestamps are integers, microseconds since the UNIX epoch, UTC):

- ``datasources(id, name, root, created_at)``
- ``datapoints(id, datasource_id, path, size, width, height, format, created_at)``: one row per
  file; ``id`` only grows (keyset paging cursor), ``(datasource_id, path)`` is unique.
- ``fields(id, datasource_id, name, type, created_at)``: metadata field names and their fixed
  type. Queries look field names up here, as bound parameters.
- ``metadata_values(id, datapoint_id, field_id, value_int, value_float, value_str, value_bool,
  value_datetime, value_blob_hash, valid_from, valid_to)``: entity-attribute-value rows with
  history. A row is never updated except to close it (set ``valid_to``); the current value has
  ``valid_to IS NULL``.
- ``datasets(id, name, datasource_id, query, created_at)``: saved queries (JSON).
- ``api_tokens(id, name, key_hash, read_only, created_at, revoked_at)``: server API keys, stored
  as sha256 of the key.
- ``settings(key, value)``: e.g. the HMAC secret that signs file URLs.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import hashlib
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.pool import StaticPool

from .values import to_utc

DEFAULT_DB_ENV = "DATAGO_ENGINE_DB"
BLOB_DIR_ENV = "DATAGO_ENGINE_BLOBS"


class UTCDateTime(sa.types.TypeDecorator):
    """DateTime stored naive in UTC, returned aware (UTC). Naive inputs are taken as UTC."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        return to_utc(value).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):  # pragma: no cover - defensive, sqlite returns datetime
            value = _dt.datetime.fromisoformat(value)
        return value.replace(tzinfo=_dt.timezone.utc)


_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

schema = sa.MetaData()

datasources = sa.Table(
    "datasources",
    schema,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("root", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sqlite_autoincrement=True,
)

datapoints = sa.Table(
    "datapoints",
    schema,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("datasource_id", sa.Integer, sa.ForeignKey("datasources.id"), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger),
    sa.Column("width", sa.Integer),
    sa.Column("height", sa.Integer),
    sa.Column("format", sa.String(32)),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("datasource_id", "path", name="uq_datapoints_source_path"),
    sa.Index("ix_datapoints_source_id", "datasource_id", "id"),
    sqlite_autoincrement=True,
)

fields = sa.Table(
    "fields",
    schema,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("datasource_id", sa.Integer, sa.ForeignKey("datasources.id"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("datasource_id", "name", name="uq_fields_source_name"),
    sqlite_autoincrement=True,
)

metadata_values = sa.Table(
    "metadata_values",
    schema,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("datapoint_id", _Id, sa.ForeignKey("datapoints.id"), nullable=False),
    sa.Column("field_id", sa.Integer, sa.ForeignKey("fields.id"), nullable=False),
    sa.Column("value_int", sa.BigInteger),
    sa.Column("value_float", sa.Double),
    sa.Column("value_str", sa.Text),
    sa.Column("value_bool", sa.Boolean),
    sa.Column("value_datetime", UTCDateTime),
    sa.Column("value_blob_hash", sa.String(64)),
    sa.Column("valid_from", sa.BigInteger, nullable=False),
    sa.Column("valid_to", sa.BigInteger),
    # current values of a datapoint (result pages, EXISTS filters) and history look-ups
    sa.Index("ix_metadata_values_dp_field", "datapoint_id", "field_id", "valid_to"),
    # value filters and "which datapoints have field X"
    sa.Index("ix_metadata_values_field_int", "field_id", "value_int"),
    sa.Index("ix_metadata_values_field_float", "field_id", "value_float"),
)

datasets = sa.Table(
    "datasets",
    schema,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("datasource_id", sa.Integer, sa.ForeignKey("datasources.id"), nullable=False),
    sa.Column("query", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

api_tokens = sa.Table(
    "api_tokens",
    schema,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("read_only", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("revoked_at", sa.BigInteger),
)

settings = sa.Table(
    "settings",
    schema,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_clock_lock = threading.Lock()
_clock_last = 0


def now_us() -> int:
    """Current time in microseconds since the UNIX epoch; strictly increasing in this process."""
    global _clock_last
    with _clock_lock:
        t = time.time_ns() // 1000
        if t <= _clock_last:
            t = _clock_last + 1
        _clock_last = t
        return t


def to_us(when: _dt.datetime | float | int) -> int:
    """Convert a point in time to microseconds since the epoch.

    Args:
        when: an aware ``datetime``, a naive ``datetime`` (taken as UTC, as query values and
            metadata take it) or UNIX seconds (int or float).

    Raises:
        TypeError: another type.
        ValueError: UNIX seconds that are not finite or too far from 1970 (beyond 64-bit µs).
    """
    if isinstance(when, _dt.datetime):
        return (to_utc(when) - _EPOCH) // _dt.timedelta(microseconds=1)
    if isinstance(when, (int, float)) and not isinstance(when, bool):
        seconds = float(when)
        if not abs(seconds) < 9.2e12:  # also NaN
            raise ValueError(f"UNIX time {when!r} is out of range")
        return round(seconds * 1_000_000)
    raise TypeError(f"expected a datetime or UNIX seconds, got {type(when).__name__}")


def from_us(us: int) -> _dt.datetime:
    """Microseconds since the epoch to an aware UTC datetime."""
    return _EPOCH + _dt.timedelta(microseconds=us)


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


class BlobStore:
    """Content-addressed blob files: ``<dir>/<sha[:2]>/<sha>``.

    Args:
        directory: folder, created on first write.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path_for(self, sha256: str) -> Path:
        """Path of the blob with this hex sha256.

        Raises:
            ValueError: not a 64-character lowercase hex digest.
        """
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"invalid blob hash {sha256!r}")
        return self.directory / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        """Store ``data`` (idempotent, atomic rename) and return its hex sha256."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path_for(digest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        return digest

    def get(self, sha256: str) -> bytes:
        """Read a blob.

        Raises:
            FileNotFoundError: no such blob in this store.
        """
        return self.path_for(sha256).read_bytes()


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
    def read(self) -> Iterator[Connection]:
        """A connection in a read transaction (rolled back at the end)."""
        with self._memory_lock, self.sa.connect() as conn:
            yield conn

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

        Raises:
            OSError, RuntimeError: the server cannot start.
        """
        with self._lock:
            if self._background is None:
                from .server import serve_in_background

                self._background = serve_in_background(self, read_only=True)
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
