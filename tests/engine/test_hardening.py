"""The engine server under abuse (issue 14): one test per finding of the probe, each failing on
the code before its fix. Every backend runs them (SQLite always, PostgreSQL in CI)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from datago.engine import cli, datasources, serve_in_background
from datago.engine import query as query_mod
from datago.engine import sql as sql_mod
from datago.engine import values as values_mod
from datago.engine.db import Engine, datapoints
from datago.engine.server import create_app
from datago.engine.tokens import create_token

with warnings.catch_warnings():  # starlette deprecates its httpx-based client in favour of httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Token {key}"}


@pytest.fixture
def srv(engine: Engine, photo_root: Path) -> SimpleNamespace:
    """A datasource "photos" with a metadata field, a read-only key, a test client."""
    ds = datasources.get_or_create("photos", photo_root, db_url=engine, progress=False)
    ds.update_metadata("Aqua.jpg", {"aesthetic": 6.5, "tags": "water"})
    key = create_token(engine, "ro", read_only=True)
    client = TestClient(create_app(engine), raise_server_exceptions=False)
    return SimpleNamespace(engine=engine, ds=ds, key=key, client=client, root=photo_root)


def asgi_post(app: Any, path: str, headers: dict[str, str], chunks: list[bytes]) -> tuple[int, bytes, int]:
    """POST ``chunks`` to an ASGI ``app``: ``(status, body, chunks the application read)``."""
    reads = 0
    out: dict[str, Any] = {"status": None, "body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal reads
        if reads >= len(chunks):
            await asyncio.sleep(3600)  # the client waits for an answer
        reads += 1
        return {"type": "http.request", "body": chunks[reads - 1], "more_body": reads < len(chunks)}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 60))
    return out["status"], out["body"], reads


def test_token_is_checked_before_the_body_is_read(srv: SimpleNamespace) -> None:
    # finding: the body was read and parsed before the token was checked (three unauthenticated
    # 60 MB POSTs grew the server by 320 MB before their 401s)
    app = create_app(srv.engine)
    chunk = b" " * (1 << 20)
    for headers in ({}, {"Authorization": "Token not-a-key"}):
        headers = {**headers, "Content-Type": "application/json", "Content-Length": str(60 << 20)}
        status, body, reads = asgi_post(app, "/api/query", headers, [chunk] * 60)
        assert status == 401 and json.loads(body)["status"] == 401
        assert reads == 0, "the body of an unauthenticated request was read"
    # with a key the body is read and answered
    query = json.dumps({"datasource": "photos", "page_size": 2}).encode()
    headers = {**auth(srv.key), "Content-Type": "application/json", "Content-Length": str(len(query))}
    status, body, reads = asgi_post(app, "/api/query", headers, [query])
    assert status == 200 and len(json.loads(body)["results"]) == 2 and reads == 1


def test_body_size_limit(srv: SimpleNamespace) -> None:
    # finding: no size limit on the body; now 413 past --max-body-bytes (default 16 MiB)
    app = create_app(srv.engine, max_body_bytes=1000)
    headers = {**auth(srv.key), "Content-Type": "application/json"}
    status, body, reads = asgi_post(app, "/api/query", {**headers, "Content-Length": str(60 << 20)}, [b" "] * 3)
    assert status == 413 and "1000 bytes" in json.loads(body)["error"] and reads == 0
    # no Content-Length (chunked): answered once the bytes read pass the limit, reading no further
    status, body, reads = asgi_post(app, "/api/query", headers, [b" " * 400] * 10)
    assert status == 413 and json.loads(body)["status"] == 413 and reads == 3
    # within the limit: answered as usual
    query = json.dumps({"datasource": "photos", "page_size": 1}).encode()
    status, body, _ = asgi_post(app, "/api/query", {**headers, "Content-Length": str(len(query))}, [query])
    assert status == 200 and len(json.loads(body)["results"]) == 1
    with pytest.raises(ValueError, match="max_body_bytes"):
        create_app(srv.engine, max_body_bytes=-1)


def _nots(n: int) -> dict[str, Any]:
    q: dict[str, Any] = {"field": "aesthetic", "op": "gt", "value": 5}
    for _ in range(n):
        q = {"not": q}
    return q


def _right_nested(n: int, wide: int = 1, field: str = "width") -> dict[str, Any]:
    """``n`` levels alternating and/or, the nested operand last (the deepest parse for SQLite),
    ``wide`` conditions on ``field`` beside it on each level."""
    q: dict[str, Any] = {"field": "aesthetic", "op": "gt", "value": 5}
    for i in range(n):
        side = [{"field": field, "op": "ge", "value": j} for j in range(wide)]
        q = {"and" if i % 2 else "or": [*side, q]}
    return q


def test_query_depth_and_size_limits(srv: SimpleNamespace) -> None:
    # finding: NOT nested 64 deep (the allowed maximum) and an OR of 5,000 conditions were 500s
    # (SQLite's parser limits); 40,000 conditions took 13.9 s and 208 MB before the 500
    c, h = srv.client, auth(srv.key)
    depth, most, lookups = query_mod.MAX_DEPTH, query_mod.MAX_CONDITIONS, query_mod.MAX_LOOKUPS
    assert depth >= 32

    def post(q: dict[str, Any]) -> Any:
        return c.post("/api/query", json={"datasource": "photos", "query": q}, headers=h)

    for q in (_nots(64), _nots(depth + 1), _right_nested(depth + 1)):
        r = post(q)
        assert r.status_code == 400 and f"nested deeper than {depth}" in r.json()["error"], r.text
    for n in (5000, 40000, most + 1):
        r = post({"or": [{"field": "aesthetic", "op": "eq", "value": i} for i in range(n)]})
        assert r.status_code == 400 and f"limit is {most}" in r.json()["error"], r.text
        assert f"{n} conditions" in r.json()["error"]
    r = post({"and": [{"field": f"f{i}", "op": "ne", "value": i} for i in range(lookups + 1)]})
    assert r.status_code == 400 and f"more than {lookups} metadata lookups" in r.json()["error"], r.text
    r = c.get("/api/images/", params={"sources": "photos", "query": json.dumps(_nots(64))}, headers=h)
    assert r.status_code == 400 and "nested deeper" in r.json()["error"]
    r = c.get("/api/images/count/", params={"tags": ",".join(f"t{i}" for i in range(most + 1))}, headers=h)
    assert r.status_code == 400 and f"limit is {most}" in r.json()["error"]
    # every query within the limits compiles and runs: the deepest shapes SQLite parses, the
    # widest same-field OR (one lookup, 2 value clauses per condition), the most lookups
    within = [
        _nots(depth),
        _right_nested(depth),
        _right_nested(depth, wide=7),
        _right_nested(depth, field="aesthetic"),
        {"or": [{"field": "aesthetic", "op": "eq", "value": i + 0.5} for i in range(most)]},
        {"and": [{"field": f"f{i}", "op": "ne", "value": i} for i in range(lookups)]},
        {"or": [{"field": f"f{i % lookups}", "op": "eq", "value": i} for i in range(most)]},
        {"or": [{"field": "tags", "op": "has_tag", "value": f"t{i}"} for i in range(most)]},
    ]
    assert json.dumps(within[3]).count("aesthetic") == depth + 1  # lookups: depth/2 ANDed, one ORed
    for q in within:
        r = post(q)
        assert r.status_code == 200, (r.text, json.dumps(q)[:200])
    assert [d["path"] for d in post(within[0]).json()["results"]] == ["Aqua.jpg"]  # an even number of NOTs
    assert [d["path"] for d in post(within[4]).json()["results"]] == ["Aqua.jpg"]  # 6.5 is one of them


def test_database_errors_caused_by_a_query_are_400(srv: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    # finding: SQLite's "Expression tree is too large" (a flat OR of a few hundred conditions)
    # and "parser stack overflow" were 500s. Without the grouping of long ORs that avoids the
    # first, the statement SQLite refuses is a 400 naming its error
    monkeypatch.setattr(sql_mod, "FAN", 10**6, raising=False)
    or_ = {"or": [{"field": "aesthetic", "op": "eq", "value": i + 0.5} for i in range(250)]}
    r = srv.client.post("/api/query", json={"datasource": "photos", "query": or_}, headers=auth(srv.key))
    if srv.engine.dialect == "sqlite":
        assert r.status_code == 400 and "Expression tree is too large" in r.json()["error"], r.text
    else:  # PostgreSQL runs it
        assert r.status_code == 200 and [d["path"] for d in r.json()["results"]] == ["Aqua.jpg"]
    # the same for any statement of a read: the database's own limit errors become QueryError
    deep = "SELECT " + "(" * 3000 + "1" + ")" * 3000
    with pytest.raises(values_mod.QueryError, match="cannot run this query"), srv.engine.read() as conn:
        conn.exec_driver_sql(deep if srv.engine.dialect == "sqlite" else "SELECT " + " + ".join(["1"] * 200000))


def test_statement_timeout(srv: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    # finding: nothing bounded a statement's time; now a timeout stops it with a 400
    count_to = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000) "
    with pytest.raises(values_mod.QueryError, match="statement timeout"), srv.engine.read(timeout_s=0.05) as conn:
        conn.exec_driver_sql(count_to + "SELECT count(*) FROM n").scalar()
    with srv.engine.read(timeout_s=0.05) as conn:  # the connection is fine afterwards
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    if srv.engine.dialect == "sqlite":  # the server's page statements run under it
        import datago.engine.db as db_mod

        monkeypatch.setattr(db_mod, "SQLITE_PROGRESS_OPS", 1)
        client = TestClient(create_app(srv.engine, statement_timeout_s=1e-9), raise_server_exceptions=False)
        for r in (
            client.get("/api/images/", headers=auth(srv.key)),
            client.post("/api/query/count/", json={"datasource": "photos"}, headers=auth(srv.key)),
        ):
            assert r.status_code == 400 and "statement timeout" in r.json()["error"], r.text


def test_urls_are_never_built_from_an_arbitrary_host(srv: SimpleNamespace) -> None:
    # finding: the Host header was reflected into next links and signed file URLs
    evil = {**auth(srv.key), "Host": "evil.example"}

    def urls(client: TestClient, headers: dict[str, str]) -> list[str]:
        body = client.get("/api/images/", params={"page_size": 2}, headers=headers).json()
        return [body["next"], *(d["image_direct_url"] for d in body["results"])]

    got = urls(srv.client, evil)
    assert all(u.startswith("http://testserver/") for u in got), got  # the address the client reached
    public = TestClient(create_app(srv.engine, public_url="https://data.example/dg/"), raise_server_exceptions=False)
    got = urls(public, evil)
    assert all(u.startswith("https://data.example/dg/") for u in got), got
    allowed = TestClient(create_app(srv.engine, allowed_hosts="evil.example,b.example:81"))
    assert all(u.startswith("http://evil.example/") for u in urls(allowed, evil))
    assert all(u.startswith("http://testserver/") for u in urls(allowed, {**evil, "Host": "b.example:82"}))
    with pytest.raises(ValueError, match="public_url"):
        create_app(srv.engine, public_url="evil.example")
    with pytest.raises(ValueError, match="allowed_hosts"):
        create_app(srv.engine, allowed_hosts=["a.example/x"])


def test_unknown_datasource_is_a_404_naming_it(srv: SimpleNamespace) -> None:
    # finding: an unknown datasource name returned an empty page (a typo trained on nothing)
    c, h = srv.client, auth(srv.key)
    for r in (
        c.get("/api/images/", params={"sources": "photoz"}, headers=h),
        c.get("/api/images/random/", params={"sources": "photos,photoz"}, headers=h),
        c.get("/api/images/count/", params={"sources": "photoz"}, headers=h),
        c.post("/api/query", json={"datasource": "photoz"}, headers=h),
        c.post("/api/query/count/", json={"sources": ["photoz"]}, headers=h),
    ):
        assert r.status_code == 404, r.text
        assert r.json()["error"] == "no datasource named 'photoz' (known: photos)"
    assert c.get("/api/images/count/", params={"sources": "photos"}, headers=h).json()["count"] == len(srv.ds.all())


def test_scan_does_not_leave_the_root(
    engine: Engine, photo_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # finding: `datago source add` followed symlinks out of the root and stored the metadata of
    # files outside it (/etc/passwd's size)
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the root\n" * 7)
    os.symlink(secret, photo_root / "link.txt")
    os.symlink("/etc/passwd", photo_root / "sub" / "passwd")
    os.symlink(photo_root / "Aqua.jpg", photo_root / "sub" / "inside.jpg")  # stays in the root: kept
    os.symlink(tmp_path / "missing", photo_root / "dangling.jpg")
    with caplog.at_level(logging.WARNING, logger="datago.engine"):
        assert cli.main(["source", "add", "--db", engine.url, "photos", str(photo_root), "--no-progress"]) == 0
    with engine.read() as conn:
        rows = {p: s for p, s in conn.execute(sa.select(datapoints.c.path, datapoints.c.size))}
    assert "link.txt" not in rows and "sub/passwd" not in rows and "dangling.jpg" not in rows
    assert rows["sub/inside.jpg"] == (photo_root / "Aqua.jpg").stat().st_size
    assert "skipped 3 symlink(s)" in caplog.text and "'link.txt'" in caplog.text


def test_no_connection_reset_after_a_500(srv: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    # finding: after a 500 the keep-alive connection was closed, resetting the client's next request
    import datago.engine.server.context as context_mod

    def boom(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(context_mod, "page_rows", boom)
    base, key, stop = serve_in_background(srv.engine)
    try:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            reader = sock.makefile("rb")
            answers = []
            for path in ("/api/images/", "/api/health", "/api/images/", "/api/health"):
                request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Token {key}\r\n\r\n"
                sock.sendall(request.encode())
                status_line = reader.readline()
                assert status_line, f"connection closed before the answer to {path}"
                headers = {}
                while (line := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = reader.read(int(headers["content-length"]))
                answers.append((int(status_line.split()[1]), json.loads(body)))
                assert headers.get("connection", "keep-alive") != "close"
        assert answers == [
            (500, {"error": "internal server error", "status": 500}),
            (200, {"ok": True}),
            (500, {"error": "internal server error", "status": 500}),
            (200, {"ok": True}),
        ]
    finally:
        stop()


def test_serve_options(engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # `datago serve` passes the options on; $DATAGO_SERVER_URL is the default public URL
    import datago.engine.server as server_pkg

    seen: dict[str, Any] = {}
    real_run = server_pkg.run
    monkeypatch.setattr(server_pkg, "run", lambda db, **kw: seen.update(kw, db=db))
    monkeypatch.setenv("DATAGO_SERVER_URL", "https://data.example")
    assert cli.main(["serve", "--db", engine.url]) == 0
    assert seen["public_url"] == "https://data.example" and seen["allowed_hosts"] is None
    assert seen["max_body_bytes"] == 16 << 20 and seen["statement_timeout_s"] == 30.0
    argv = ["serve", "--db", engine.url, "--public-url", "http://h:1", "--allowed-hosts", "a,b:2"]
    assert cli.main([*argv, "--max-body-bytes", "10", "--statement-timeout", "0"]) == 0
    assert seen["public_url"] == "http://h:1" and seen["allowed_hosts"] == "a,b:2"
    assert seen["max_body_bytes"] == 10 and seen["statement_timeout_s"] is None
    assert cli.main(["serve", "--db", engine.url, "--max-body-bytes", "-1"]) == 1
    assert "--max-body-bytes" in capsys.readouterr().err
    monkeypatch.setattr(server_pkg, "run", real_run)
    assert cli.main(["serve", "--db", engine.url, "--public-url", "data.example"]) == 1  # before serving
    assert "public_url" in capsys.readouterr().err


def test_host_that_is_the_address_itself_is_not_warned_about(
    srv: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    # the db source of the embedded engine asks with Host 127.0.0.1:port, the address it reached:
    # nothing is replaced, so nothing is logged; any other Host is logged once
    client = TestClient(create_app(srv.engine))
    with caplog.at_level(logging.WARNING, logger="datago.engine"):
        client.get("/api/images/", params={"page_size": 1}, headers=auth(srv.key))
        assert "not an allowed host" not in caplog.text
        client.get("/api/images/", params={"page_size": 1}, headers={**auth(srv.key), "Host": "evil.example"})
        assert caplog.text.count("'evil.example' is not an allowed host") == 1
