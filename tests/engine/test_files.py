"""Serving datasource files: small files from memory (through the ASGI fast path or the route),
Range resumes with If-Range, and the same validators every way (the Go HTTP layer resumes a cut
download with them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from datago.engine import datasources
from datago.engine.db import Engine
from datago.engine.server import create_app
from datago.engine.server import routes_files as server_mod
from datago.engine.tokens import create_token


def image_urls(client: TestClient, key: str) -> dict[str, str]:
    r = client.get(
        "/api/images/",
        params={"sources": "photos", "page_size": 100, "fields": "image_direct_url"},
        headers={"Authorization": f"Token {key}"},
    )
    assert r.status_code == 200, r.text
    urls = [row["image_direct_url"] for row in r.json()["results"]]
    return {u.split("?")[0].rsplit("/", 1)[1]: u for u in urls}


@pytest.mark.parametrize(
    "fast_limit, small_limit",
    [(server_mod.FAST_FILE_BYTES, server_mod.SMALL_FILE_BYTES), (0, server_mod.SMALL_FILE_BYTES), (0, 0)],
    ids=["asgi-fast-path", "route-whole-file", "route-file-response"],
)
def test_whole_and_ranged_files(
    engine: Engine, photo_root: Path, monkeypatch: pytest.MonkeyPatch, fast_limit: int, small_limit: int
) -> None:
    # the three ways a file can be answered (the ASGI fast path, the route reading the file
    # whole, Starlette's FileResponse) must not differ
    monkeypatch.setattr(server_mod, "FAST_FILE_BYTES", fast_limit)
    monkeypatch.setattr(server_mod, "SMALL_FILE_BYTES", small_limit)
    datasources.get_or_create("photos", photo_root, db_url=engine, progress=False)
    client = TestClient(create_app(engine))
    urls = image_urls(client, create_token(engine, "reader", read_only=True))
    url = urls["Aqua.jpg"]
    data = (photo_root / "Aqua.jpg").read_bytes()
    whole = client.get(url)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "image/jpeg"
    assert int(whole.headers["content-length"]) == len(data)
    etag, modified = whole.headers["etag"], whole.headers["last-modified"]
    assert etag.startswith('"') and modified.endswith("GMT")
    # a resumed download: the rest of the file if the validator still matches, else all of it
    for validator in (etag, modified):
        part = client.get(url, headers={"Range": "bytes=1000-", "If-Range": validator})
        assert part.status_code == 206 and part.content == data[1000:], validator
        assert part.headers["content-range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    stale = client.get(url, headers={"Range": "bytes=1000-", "If-Range": '"another-version"'})
    assert stale.status_code == 200 and stale.content == data
    # every file of the datasource comes back byte for byte
    for name, u in urls.items():
        assert client.get(u).content == next(photo_root.rglob(name)).read_bytes(), name
