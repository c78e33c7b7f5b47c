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

import httpx
import pandas as pd
import pytest

from datago.engine import Field, datasources
from datago.engine.db import Engine
from datago.engine.scan import list_http
from datago.engine.server import create_app
from datago.engine.tokens import create_token

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
