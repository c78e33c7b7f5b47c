"""Regression tests of review findings: errors that surfaced as 500s, races, and query semantics
that contradicted the docstrings. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from datago.engine import Field, datasources
from datago.engine.datasets import get_dataset
from datago.engine.datasource import Datasource
from datago.engine.db import BLOB_DIR_ENV, Engine
from datago.engine.query import And, Or
from datago.engine.scan import list_http
from datago.engine.server import create_app
from datago.engine.tokens import create_token, list_tokens

with warnings.catch_warnings():  # starlette deprecates its httpx-based client in favour of httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture
def text_root(tmp_path: Path) -> Path:
    """Ten small text files (no width, height or format)."""
    root = tmp_path / "texts"
    root.mkdir()
    for i in range(10):
        (root / f"f{i}.txt").write_text("x" * (i + 1))
    return root


@pytest.fixture
def client(engine: Engine, text_root: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    datasources.get_or_create("texts", text_root, db_url=engine, progress=False)
    key = create_token(engine, "k")
    yield TestClient(create_app(engine), raise_server_exceptions=False), {"Authorization": f"Token {key}"}


def test_field_names_with_nul_are_400_not_500(client: tuple[TestClient, dict[str, str]]) -> None:
    c, h = client
    for params in ({"attributes": "a\x00b:1"}, {"has_attributes": "a\x00b"}, {"lacks_masks": "x\x00"}):
        r = c.get("/api/images/", params=params, headers=h)
        assert r.status_code == 400, (params, r.text)
        assert "field name" in r.json()["error"]


def test_non_ascii_signature_is_403_not_500(client: tuple[TestClient, dict[str, str]]) -> None:
    c, _ = client
    for url in ("/blobs/" + "0" * 64, "/files/1/f1.txt"):
        r = c.get(url, params={"exp": "99999999999", "sig": "\u00e9"})
        assert r.status_code == 403, (url, r.text)
        assert r.json()["error"] == "invalid signature"


def test_malformed_body_values_are_400(client: tuple[TestClient, dict[str, str]]) -> None:
    c, h = client
    for body in (
        {"datasource": "texts", "cursor": [1]},
        {"datasource": "texts", "cursor": {"a": 1}},
        {"datasource": "texts", "return_latents": 5},
        {"datasource": "texts", "return_latents": [["a"]]},
        {"datasource": "texts", "fields": 5},
    ):
        r = c.post("/api/query", json=body, headers=h)
        assert r.status_code == 400, (body, r.text)


def test_deeply_nested_query_parameter_is_400(client: tuple[TestClient, dict[str, str]]) -> None:
    c, h = client
    deep = '{"not":' * 3000 + '{"field":"a","op":"is_null"}' + "}" * 3000
    r = c.get("/api/images/", params={"query": deep}, headers=h)
    assert r.status_code == 400, r.text


def test_random_query_pages_keep_their_seed_without_prefetch(client: tuple[TestClient, dict[str, str]]) -> None:
    """POST /api/query with random and no seed: the pages of its ``next`` URLs follow one order
    even when no page was computed ahead (the seed travels in ``next``)."""
    c, h = client
    c.app.state.prefetch.ttl = -1.0  # every prefetched page is stale: each page is computed anew
    body = {"datasource": "texts", "random": True, "page_size": 3}
    seen: list[str] = []
    r = c.post("/api/query", json=body, headers=h)
    while True:
        assert r.status_code == 200, r.text
        data = r.json()
        seen += [x["id"] for x in data["results"]]
        if not data["next"]:
            break
        r = c.post(data["next"], json=body, headers=h)
    assert len(seen) == 10 and len(set(seen)) == 10


def test_negated_builtin_comparison_matches_datapoints_without_a_value(engine: Engine, text_root: Path) -> None:
    """As for metadata fields, ``~(f > v)`` matches the datapoints without a value for ``f``
    (text files have no width or format)."""
    ds = datasources.get_or_create("texts", text_root, db_url=engine, progress=False)
    assert ds[ds["width"] > 10].count() == 0
    assert ds[~(ds["width"] > 10)].count() == 10
    assert ds[~(ds["short_edge"] == 10)].count() == 10
    assert ds[~ds["format"].contains("PNG")].count() == 10
    assert ds[~((ds["width"] > 10) | (ds["size"] > 5))].count() == 5
    assert ds[ds["size"] > 5].count() == 5


def test_created_at_takes_naive_datetimes_as_utc(engine: Engine, text_root: Path) -> None:
    """Naive datetimes in queries are UTC for ``created_at`` as for metadata, whatever the
    local time zone."""
    if not hasattr(time, "tzset"):
        pytest.skip("needs time.tzset")
    ds = datasources.get_or_create("texts", text_root, db_url=engine, progress=False)
    soon = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(minutes=1)
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "Etc/GMT-9"  # UTC+9
    time.tzset()
    try:
        assert ds[ds["created_at"] <= soon].count() == 10
        assert ds[Field("created_at") > soon].count() == 0
    finally:
        if old_tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old_tz
        time.tzset()


def test_dataframe_with_non_str_column_labels(engine: Engine, text_root: Path) -> None:
    ds = datasources.get_or_create("texts", text_root, db_url=engine, progress=False)
    assert ds.upload_metadata_from_dataframe(pd.DataFrame({"path": ["f0.txt", "f1.txt"], 0: [1, 2]})) == 2
    assert {d.path: d.metadata for d in ds[ds["0"] >= 1].all()} == {"f0.txt": {"0": 1}, "f1.txt": {"0": 2}}


def test_url_secret_created_once_under_concurrency(engine: Engine) -> None:
    """Threads of several engines on one fresh database all get the same URL secret (on
    PostgreSQL concurrent first inserts used to fail with IntegrityError)."""
    engines = [Engine(engine.url, blob_dir=engine.blobs.directory) for _ in range(6)]
    barrier = threading.Barrier(len(engines) * 2)
    results: list[object] = []

    def run(e: Engine) -> None:
        barrier.wait()
        try:
            results.append(e.secret())
        except Exception as exc:  # reported below
            results.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines for _ in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for e in engines:
            e.sa.dispose()
    assert all(isinstance(r, bytes) for r in results), results
    assert len(set(results)) == 1 and results[0] == engine.secret()


def test_http_json_listing_skips_invalid_and_hidden_paths() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"files": ["a.jpg", "/b/c.jpg", "../x.jpg", "d/../e.jpg", ".h.jpg", ".git/f"]})

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        assert list_http(http, "http://example.test/root/") == ["a.jpg", "b/c.jpg"]


def test_in_memory_engine_is_safe_across_threads(text_root: Path) -> None:
    """An in-memory SQLite engine is one shared connection: reads and writes from several
    threads (the background server, its prefetch workers) used to interleave transactions on it."""
    eng = Engine("sqlite://")
    try:
        ds = datasources.get_or_create("texts", text_root, db_url=eng, progress=False)
        errors: list[str] = []

        def reader() -> None:
            for _ in range(100):
                try:
                    assert len(ds.all()) == 10
                except Exception as exc:  # reported below
                    errors.append(repr(exc))

        def writer() -> None:
            for i in range(100):
                try:
                    ds.update_metadata("f1.txt", {"n": i})
                except Exception as exc:  # reported below
                    errors.append(repr(exc))

        threads = [threading.Thread(target=reader) for _ in range(3)] + [threading.Thread(target=writer)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert ds[ds["n"] == 99].count() == 1
    finally:
        eng.dispose()


def test_scan_of_an_unreachable_http_root_is_502(engine: Engine) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    datasources.get_or_create("remote", f"http://127.0.0.1:{port}/photos/", db_url=engine, scan=False)
    c = TestClient(create_app(engine), raise_server_exceptions=False)
    r = c.post("/api/datasources/remote/scan", headers={"Authorization": f"Token {create_token(engine, 'w')}"})
    assert r.status_code == 502 and r.json()["status"] == 502 and "cannot scan" in r.json()["error"]


def test_http_html_listing_does_not_fetch_hidden_folders() -> None:
    """Hidden folders of HTML listings are skipped before they are fetched (their files were
    dropped anyway, but each cost a request)."""
    pages = {
        "/root/": '<a href="a.jpg">a</a> <a href=".git/">.git</a> <a href="sub/">sub</a> <a href="../">up</a>',
        "/root/sub/": '<a href="b.jpg">b</a> <a href=".cache/">c</a> <a href="/root/sub/.x/y/">x</a>',
        "/root/.git/": '<a href="config">c</a>',
        "/root/sub/.cache/": '<a href="c.jpg">c</a>',
        "/root/sub/.x/y/": '<a href="d.jpg">d</a>',
    }
    requested: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requested.append(request.url.path)
        if request.url.path not in pages:
            return httpx.Response(404)
        return httpx.Response(200, text=pages[request.url.path], headers={"content-type": "text/html"})

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        assert list_http(http, "http://example.test/root/") == ["a.jpg", "sub/b.jpg"]
    assert sorted(requested) == ["/root/", "/root/sub/"]


def _meet_before_insert(engine: Engine, table: str, timeout: float = 2.0) -> Any:
    """Make the first INSERT into ``table`` of each of two threads wait for the other one (at
    most ``timeout`` s: a thread that cannot get there, being serialised behind the first, lets
    it go on). Returns the listener, for ``sa.event.remove(engine.sa, "before_cursor_execute", it)``."""
    barrier = threading.Barrier(2, timeout=timeout)
    waited: set[int] = set()

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if (
            statement.lstrip().upper().startswith(f"INSERT INTO {table.upper()} ")
            and threading.get_ident() not in waited
        ):
            waited.add(threading.get_ident())
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass

    sa.event.listen(engine.sa, "before_cursor_execute", before)
    return before


def _in_two_threads(fn: Any) -> list[object]:
    results: list[object] = []

    def run() -> None:
        try:
            results.append(fn())
        except Exception as exc:  # reported by the caller
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_save_dataset_of_one_name(engine: Engine, text_root: Path) -> None:
    """Two saves of one name racing (both find no dataset, then both insert): the loser gets the
    ValueError of a sequential duplicate (was an IntegrityError on PostgreSQL); with overwrite
    both succeed, one after the other."""
    ds = datasources.get_or_create("texts", text_root, db_url=engine, progress=False)
    view = ds[ds["size"] > 5]
    listener = _meet_before_insert(engine, "datasets")
    try:
        results = _in_two_threads(lambda: view.save_dataset("race"))
        assert sorted(type(r).__name__ for r in results) == ["Datasource", "ValueError"], results
        assert "already exists" in str(next(r for r in results if isinstance(r, ValueError)))
        results = _in_two_threads(lambda: view.save_dataset("race2", overwrite=True))
        assert all(isinstance(r, Datasource) for r in results), results
    finally:
        sa.event.remove(engine.sa, "before_cursor_execute", listener)
    assert get_dataset("race", engine).count() == get_dataset("race2", engine).count() == 5


def test_concurrent_tokens_of_one_name(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    """Two creations of a token name racing leave one active token (the other is refused as a
    sequential duplicate is); ``datago token create`` reports a duplicate without a traceback."""
    listener = _meet_before_insert(engine, "api_tokens")
    try:
        results = _in_two_threads(lambda: create_token(engine, "twin"))
    finally:
        sa.event.remove(engine.sa, "before_cursor_execute", listener)
    assert sorted(type(r).__name__ for r in results) == ["ValueError", "str"], results
    assert [t.name for t in list_tokens(engine)] == ["twin"]

    from datago.engine.cli import main

    try:
        assert main(["token", "create", "--db", engine.url, "--name", "cli"]) == 0
        capsys.readouterr()
        assert main(["token", "create", "--db", engine.url, "--name", "cli"]) == 1
        err = capsys.readouterr().err
        assert err == "datago: error: an active token named 'cli' exists\n"
    finally:
        from datago.engine.db import get_engine

        get_engine(engine.url).dispose()
    assert [t.name for t in list_tokens(engine)] == ["twin", "cli"]


def test_add_datapoints_refuses_invalid_paths(engine: Engine, text_root: Path) -> None:
    ds = datasources.get_or_create("texts", text_root, db_url=engine, progress=False)
    for bad in ("a\x00b.jpg", "../up.jpg", "/abs.jpg", "a//b.jpg", "a\\b.jpg"):
        with pytest.raises(ValueError, match="invalid datapoint path") as info:
            ds.add_datapoints([{"path": "fine.jpg"}, {"path": bad}])
        assert repr(bad) in str(info.value)
    assert ds.count() == 10  # nothing written
    assert ds.add_datapoints([{"path": "fine.jpg"}]) == 1


def test_as_of_takes_naive_datetimes_as_utc(engine: Engine, text_root: Path) -> None:
    """``as_of`` takes naive datetimes as UTC, as query values do, whatever the local time zone."""
    if not hasattr(time, "tzset"):
        pytest.skip("needs time.tzset")
    ds = datasources.get_or_create("texts", text_root, db_url=engine, progress=False)
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "Etc/GMT-9"  # UTC+9
    time.tzset()
    try:
        view = ds.as_of(soon.replace(tzinfo=None))
        assert view.as_of_time == ds.as_of(soon).as_of_time == soon
        assert view.count() == 10
        assert ds.as_of((soon - dt.timedelta(hours=1)).replace(tzinfo=None)).count() == 0
    finally:
        if old_tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old_tz
        time.tzset()


def test_in_memory_engine_dispose_removes_its_blob_folder(
    tmp_path: Path, text_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(BLOB_DIR_ENV, raising=False)
    eng = Engine("sqlite://")
    ds = datasources.get_or_create("texts", text_root, db_url=eng, progress=False)
    ds.update_metadata("f1.txt", {"raw": b"blob"})
    folder = eng.blobs.directory
    assert any(folder.rglob("*")) and ds[ds["raw"] == b"blob"].count() == 1
    eng.dispose()
    assert not folder.exists()
    eng.dispose()  # twice is fine
    own = Engine("sqlite://", blob_dir=tmp_path / "mine")  # a folder given is never removed
    own.blobs.put(b"x")
    own.dispose()
    assert any((tmp_path / "mine").rglob("*"))


def test_views_on_bases_differing_by_1_true_or_1_0_are_not_one_base(engine: Engine, text_root: Path) -> None:
    """``&`` and ``|`` of field-comparison views combine their own conditions only when the
    bases are the same query exactly (1 == True == 1.0 in Python, not in queries)."""
    ds = datasources.get_or_create("texts", text_root, db_url=engine, progress=False)
    ds.update_metadata([f"f{i}.txt" for i in range(3)], {"n": 1})
    same = ds[ds["n"] == 1]
    q = ((same["size"] > 1) | (same["size"] <= 1)).query
    assert (
        q is not None and q.to_json() == And.of(Field("n") == 1, Or.of(Field("size") > 1, Field("size") <= 1)).to_json()
    )
    for other in (1.0, True):
        a = ds[ds["n"] == 1]["size"] > 1
        b = ds[ds["n"] == other]["size"] <= 1
        assert a.query is not None and b.query is not None
        assert (a | b).query.to_json() == Or.of(a.query, b.query).to_json()  # type: ignore[union-attr]
        assert (a & b).query.to_json() == And.of(a.query, b.query).to_json()  # type: ignore[union-attr]
    assert (ds[ds["n"] == 1]["size"] > 1).count() + (ds[ds["n"] == 1.0]["size"] <= 1).count() == 3
