"""The engine server: dataroom image API, engine queries, auth, signed URLs, CLI tokens."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from PIL import Image

from datago.engine import cli, datasources, serve_in_background
from datago.engine.db import Engine, datapoints, get_engine
from datago.engine.executor import PageSpec, fetch_page
from datago.engine.server import create_app
from datago.engine.signing import file_url, sign
from datago.engine.tokens import create_token, list_tokens, revoke_token

with warnings.catch_warnings():  # starlette deprecates its httpx-based client in favour of httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

EMBEDDING = [0.5, -1.0, 2.0]
PHOTO_PATHS = [
    "Aqua.jpg",
    "Blinds.jpg",
    "Dune.jpg",
    "FreshFlower.jpg",
    "notes.txt",
    "png/Aqua.png",
    "png/Storm.png",
    "sub/GreenMeadow.jpg",
    "sub/Storm.jpg",
]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Token {key}"}


@pytest.fixture
def api(engine: Engine, photo_root: Path) -> SimpleNamespace:
    """Two datasources with dataroom-style metadata, a read-write and a read-only key, a client."""
    ds = datasources.get_or_create("photos", photo_root, db_url=engine, progress=False)
    other = datasources.get_or_create("other", photo_root / "sub", db_url=engine, progress=False)
    emb = struct.pack("<3f", *EMBEDDING)
    with ds.metadata_context() as ctx:
        ctx.update_metadata(
            "Aqua.jpg",
            {
                "tags": "nature, water",
                "duplicate_state": 0,
                "aesthetic": 6.5,
                "caption": "blue water",
                "latent:seg": "png/Aqua.png",
                "mask:alpha": "png/Storm.png",
                "coca_embedding": emb,
            },
        )
        ctx.update_metadata("Blinds.jpg", {"tags": ["indoor"], "aesthetic": 4.0})
        ctx.update_metadata("Dune.jpg", {"tags": "nature,desert", "duplicate_state": 1, "aesthetic": 5.5})
        ctx.update_metadata("Dune.jpg", {"latent:vae": "notes.txt"})
        ctx.update_metadata("FreshFlower.jpg", {"tags": "nature", "caption": "flower"})
    other.update_metadata("Storm.jpg", {"tags": "sky"})
    rw = create_token(engine, "rw")
    ro = create_token(engine, "ro", read_only=True)
    client = TestClient(create_app(engine), raise_server_exceptions=False)
    ids = {d.path: d.datapoint_id for d in ds.all()}
    return SimpleNamespace(engine=engine, ds=ds, other=other, rw=rw, ro=ro, client=client, ids=ids, root=photo_root)


def collect(api: SimpleNamespace, params: dict[str, Any], path: str = "/api/images/") -> list[dict[str, Any]]:
    """All results of a listing, following ``next`` links."""
    out: list[dict[str, Any]] = []
    resp = api.client.get(path, params=params, headers=auth(api.ro))
    for _ in range(1000):
        assert resp.status_code == 200, resp.text
        body = resp.json()
        out += body["results"]
        if body["next"] is None:
            return out
        assert body["next"].startswith("http://testserver/api/")
        resp = api.client.get(body["next"], headers=auth(api.ro))
    raise AssertionError("paging did not end")


def listed(api: SimpleNamespace, **params: Any) -> list[str]:
    """Sorted ``source/path`` of a listing (page size 2 to exercise paging)."""
    rows = collect(api, {"page_size": 2, "fields": "source,path", **params})
    return sorted(f"{r['source']}/{r['path']}" for r in rows)


def photos(*paths: str) -> list[str]:
    return sorted(f"photos/{p}" for p in paths)


def test_auth(api: SimpleNamespace) -> None:
    c = api.client
    for headers in ({}, {"Authorization": "Token nope"}, {"Authorization": "Basic abc"}, {"Authorization": "Token"}):
        r = c.get("/api/images/", headers=headers)
        assert r.status_code == 401 and r.json()["status"] == 401 and "error" in r.json()
    assert c.get("/api/health").json() == {"ok": True}
    assert c.get("/api/images/", headers={"Authorization": f"Token  {api.ro}"}).status_code == 200  # Go sends 2 spaces
    assert c.get("/api/datasources/", headers=auth(api.ro)).status_code == 200
    body = {"updates": [{"path": "Blinds.jpg", "metadata": {"caption": "written"}}]}
    r = c.post("/api/datasources/photos/metadata", json=body, headers=auth(api.ro))
    assert r.status_code == 403 and r.json() == {"error": "this token is read-only", "status": 403}
    assert c.post("/api/datasources/photos/scan", headers=auth(api.ro)).status_code == 403
    assert c.post("/api/datasources/photos/metadata", json=body).status_code == 401
    assert api.ds[api.ds["caption"] == "written"].count() == 0
    r = c.post("/api/datasources/photos/metadata", json=body, headers=auth(api.rw))
    assert r.status_code == 200 and r.json() == {"updated": 1}
    assert api.ds[api.ds["caption"] == "written"].all().paths == ["Blinds.jpg"]
    assert c.post("/api/query", json={}, headers=auth(api.ro)).status_code == 200  # a read
    revoke_token(api.engine, "rw")
    assert c.post("/api/datasources/photos/metadata", json=body, headers=auth(api.rw)).status_code == 401
    assert [t.name for t in list_tokens(api.engine)] == ["ro"]


def test_write_endpoints_validate(api: SimpleNamespace) -> None:
    c, h = api.client, auth(api.rw)
    bad_type = {"updates": [{"path": "Blinds.jpg", "metadata": {"aesthetic": "high"}}]}
    r = c.post("/api/datasources/photos/metadata", json=bad_type, headers=h)
    assert r.status_code == 400 and "aesthetic" in r.json()["error"] and "Blinds.jpg" in r.json()["error"]
    r = c.post(
        "/api/datasources/photos/metadata", json={"updates": [{"path": "../nope.jpg", "metadata": {"a": 1}}]}, headers=h
    )
    assert r.status_code == 400 and "../nope.jpg" in r.json()["error"]
    assert c.post("/api/datasources/nope/metadata", json={"updates": []}, headers=h).status_code == 404
    when = {"$datetime": "2024-02-03T04:05:06+00:00"}
    r = c.post(
        "/api/datasources/photos/metadata",
        json={"updates": [{"path": "Blinds.jpg", "metadata": {"seen": when, "raw": {"$bytes": "AAEC"}}}]},
        headers=h,
    )
    assert r.status_code == 200
    assert api.ds.fields["seen"] == "datetime" and api.ds.fields["raw"] == "bytes"
    (api.root / "added.png").write_bytes((api.root / "png" / "Storm.png").read_bytes())
    assert c.post("/api/datasources/photos/scan", headers=h).json() == {"added": 1}


def test_result_shape_and_paging(api: SimpleNamespace) -> None:
    rows = collect(api, {"page_size": 3, "sources": "photos"})
    assert [int(r["id"]) for r in rows] == sorted(api.ids.values())
    by_path = {r["path"]: r for r in rows}
    aqua = by_path["Aqua.jpg"]
    assert isinstance(aqua["id"], str) and aqua["source"] == "photos"
    assert aqua["attributes"] == {"aesthetic": 6.5, "caption": "blue water"}
    assert aqua["tags"] == ["nature", "water"] and aqua["duplicate_state"] == 0
    assert aqua["coca_embedding"] == {"vector": EMBEDDING}
    with Image.open(api.root / "Aqua.jpg") as im:
        assert (aqua["width"], aqua["height"]) == im.size
    assert aqua["image_direct_url"].startswith(f"http://testserver/files/{api.ds.id}/Aqua.jpg?exp=")
    latents = sorted(aqua["latents"], key=lambda x: x["latent_type"])
    assert [(x["latent_type"], x["is_mask"]) for x in latents] == [("alpha", True), ("seg", False)]
    assert by_path["Blinds.jpg"]["tags"] == ["indoor"] and by_path["Blinds.jpg"]["latents"] == []
    assert by_path["notes.txt"]["coca_embedding"] is None and by_path["notes.txt"]["duplicate_state"] is None
    # the fields datago's db source asks for
    page = api.client.get(
        "/api/images/", params={"fields": "attributes,image_direct_url,source", "page_size": 1}, headers=auth(api.ro)
    ).json()
    assert set(page["results"][0]) == {"id", "attributes", "image_direct_url", "source"}
    assert parse_qs(urlsplit(page["next"]).query)["cursor"] == [str(page["results"][0]["id"])]
    r = api.client.get("/api/images/", params={"return_latents": "seg", "sources": "photos"}, headers=auth(api.ro))
    got = {x["path"]: x["latents"] for x in r.json()["results"]}
    assert [x["latent_type"] for x in got["Aqua.jpg"]] == ["seg"]
    for params, status in (
        ({"page_size": 2001}, 400),
        ({"page_size": 0}, 400),
        ({"page_size": "x"}, 400),
        ({"bogus": 1}, 400),
        ({"cursor": "abc"}, 400),
        ({"fields": "attributes,nope"}, 400),
        ({"partitions_count": 2}, 400),
        ({"partitions_count": 2, "partition": 2}, 400),
        ({"attributes": "novalue"}, 400),
    ):
        r = api.client.get("/api/images/", params=params, headers=auth(api.ro))
        assert r.status_code == status and r.json()["status"] == status, params
    assert len(collect(api, {"page_size": 2000})) == len(PHOTO_PATHS) + 2


def test_dataroom_filters(api: SimpleNamespace) -> None:
    assert listed(api, sources="photos") == photos(*PHOTO_PATHS)
    assert listed(api, sources="other") == ["other/GreenMeadow.jpg", "other/Storm.jpg"]
    assert listed(api, sources__ne="photos") == ["other/GreenMeadow.jpg", "other/Storm.jpg"]
    assert listed(api, sources="photos,other") == sorted(photos(*PHOTO_PATHS) + listed(api, sources="other"))
    assert listed(api, tags="water,desert") == photos("Aqua.jpg", "Dune.jpg")
    assert listed(api, tags__all="nature,water") == photos("Aqua.jpg")
    assert listed(api, tags="sky") == ["other/Storm.jpg"]
    untagged = [p for p in PHOTO_PATHS if p not in ("Aqua.jpg", "Dune.jpg", "FreshFlower.jpg")]
    assert listed(api, sources="photos", tags__ne="nature") == photos(*untagged)
    # the db source's other tag filters: not all of, and no tags at all (an empty list counts)
    api.ds.update_metadata("png/Aqua.png", {"tags": []})
    assert listed(api, sources="photos", tags__ne_all="nature,water") == photos(
        *[p for p in PHOTO_PATHS if p != "Aqua.jpg"]
    )
    tagged = ["Aqua.jpg", "Blinds.jpg", "Dune.jpg", "FreshFlower.jpg"]
    assert listed(api, sources="photos", tags__empty="true") == photos(*[p for p in PHOTO_PATHS if p not in tagged])
    assert listed(api, tags__empty="False") == ["other/Storm.jpg", *photos(*tagged)]
    r = api.client.get("/api/images/", params={"tags__empty": "maybe"}, headers=auth(api.ro))
    assert r.status_code == 400 and "tags__empty" in r.json()["error"]
    assert listed(api, attributes="aesthetic__gte:5.5") == photos("Aqua.jpg", "Dune.jpg")
    assert listed(api, attributes="aesthetic__gt:4,aesthetic__lt:6") == photos("Dune.jpg")
    assert listed(api, attributes="aesthetic:4") == photos("Blinds.jpg")  # int text matches a float field
    assert listed(api, attributes="caption__contains:water") == photos("Aqua.jpg")
    assert listed(api, attributes="caption__contains:Water") == []
    assert listed(api, attributes="caption__icontains:Water") == photos("Aqua.jpg")
    assert listed(api, attributes="caption:flower") == photos("FreshFlower.jpg")
    assert listed(api, attributes="caption__ne:flower") == photos("Aqua.jpg")
    assert listed(api, has_attributes="caption") == photos("Aqua.jpg", "FreshFlower.jpg")
    assert listed(api, has_attributes="caption,aesthetic") == photos("Aqua.jpg")
    no_aesthetic = [p for p in PHOTO_PATHS if p not in ("Aqua.jpg", "Blinds.jpg", "Dune.jpg")]
    assert listed(api, sources="photos", lacks_attributes="aesthetic") == photos(*no_aesthetic)
    assert listed(api, has_latents="seg") == photos("Aqua.jpg")
    assert listed(api, has_latents="alpha") == photos("Aqua.jpg")  # masks are latents too
    assert listed(api, has_masks="alpha") == photos("Aqua.jpg")
    assert listed(api, has_masks="seg") == []
    assert listed(api, has_latents="vae") == photos("Dune.jpg")
    assert listed(api, sources="photos", lacks_latents="vae,seg") == photos(
        *[p for p in PHOTO_PATHS if p not in ("Aqua.jpg", "Dune.jpg")]
    )
    assert listed(api, sources="photos", lacks_masks="alpha") == photos(*[p for p in PHOTO_PATHS if p != "Aqua.jpg"])
    sizes = {}
    for p in PHOTO_PATHS:
        if p != "notes.txt":
            with Image.open(api.root / p) as im:
                sizes[p] = im.size
    assert listed(api, sources="photos", short_edge__gte=480) == photos(*[p for p, s in sizes.items() if min(s) >= 480])
    assert listed(api, sources="photos", short_edge__lte=420) == photos(*[p for p, s in sizes.items() if min(s) <= 420])
    assert listed(api, pixel_count__lte=10000) == photos("png/Aqua.png", "png/Storm.png")
    assert listed(api, sources="photos", pixel_count__gte=1024 * 640) == photos(
        *[p for p, s in sizes.items() if s[0] * s[1] >= 1024 * 640]
    )
    assert listed(api, duplicate_state=1) == photos("Dune.jpg")
    assert listed(api, sources="photos", duplicate_state="None") == photos(*[p for p in PHOTO_PATHS if p != "Dune.jpg"])
    q = '{"or":[{"field":"aesthetic","op":"lt","value":5},{"not":{"field":"caption","op":"is_null"}}]}'
    assert listed(api, query=q) == photos("Aqua.jpg", "Blinds.jpg", "FreshFlower.jpg")
    assert listed(api, query=q, tags="nature") == photos("Aqua.jpg", "FreshFlower.jpg")
    r = api.client.get("/api/images/count/", params={"tags": "nature"}, headers=auth(api.ro))
    assert r.json() == {"count": 3}
    assert api.client.get("/api/images/", params={"query": "{bad"}, headers=auth(api.ro)).status_code == 400


def test_partitions_disjoint_and_complete(api: SimpleNamespace) -> None:
    api.ds.add_datapoints({"path": f"synthetic/{i:03d}.jpg", "width": 10 + i, "height": 20} for i in range(150))
    everything = sorted(r.id for r in fetch_page(api.engine, PageSpec())[0])
    assert len(everything) == len(PHOTO_PATHS) + 2 + 150
    for n in range(1, 65):
        seen: list[int] = []
        for k in range(n):
            seen += [r.id for r in fetch_page(api.engine, PageSpec(partitions=(n, k), select=[]))[0]]
        assert sorted(seen) == everything, n  # complete and (same length, sorted equal) disjoint
    for n in (1, 2, 3, 7, 64):
        seen_http: list[str] = []
        for k in range(n):
            params = {"page_size": 2000, "partitions_count": n, "partition": k, "fields": "source"}
            rows = collect(api, params)
            seen_http += [r["id"] for r in rows]
            count = api.client.get("/api/images/count/", params=params, headers=auth(api.ro)).json()["count"]
            assert count == len(rows)
        assert sorted(int(i) for i in seen_http) == everything, n


def test_random_order_seeded(api: SimpleNamespace) -> None:
    api.ds.add_datapoints({"path": f"r/{i:03d}.jpg"} for i in range(40))
    ids = lambda rows: [int(r["id"]) for r in rows]  # noqa: E731
    a = ids(collect(api, {"seed": 7, "page_size": 6, "fields": "source"}, "/api/images/random/"))
    b = ids(collect(api, {"seed": 7, "page_size": 11, "fields": "source"}, "/api/images/random/"))
    c = ids(collect(api, {"seed": 8, "page_size": 6, "fields": "source"}, "/api/images/random/"))
    assert a == b and sorted(a) == sorted(c) == sorted(set(a)) and len(a) == len(PHOTO_PATHS) + 2 + 40
    assert a != sorted(a) and a != c
    r = api.client.get("/api/images/random/", params={"page_size": 5}, headers=auth(api.ro)).json()
    assert "seed" in parse_qs(urlsplit(r["next"]).query)  # a chosen seed is kept for the next pages
    filtered = ids(collect(api, {"seed": 3, "page_size": 2, "tags": "nature"}, "/api/images/random/"))
    assert sorted(filtered) == sorted(api.ids[p] for p in ("Aqua.jpg", "Dune.jpg", "FreshFlower.jpg"))


def test_post_query(api: SimpleNamespace) -> None:
    ds = api.ds
    view = ds[((ds["aesthetic"] > 5) | ds["tags"].has_tag("indoor")) & ~(ds["duplicate_state"] == 1)]
    body = {"datasource": "photos", "query": view.query.to_dict(), "page_size": 1, "fields": ["path", "attributes"]}
    got: list[dict[str, Any]] = []
    r = api.client.post("/api/query", json=body, headers=auth(api.ro))
    while True:
        assert r.status_code == 200, r.text
        got += r.json()["results"]
        if not r.json()["next"]:
            break
        r = api.client.post(r.json()["next"], json=body, headers=auth(api.ro))  # same body to next
    assert [g["path"] for g in got] == view.all().paths == ["Aqua.jpg", "Blinds.jpg"]
    count = api.client.post("/api/query/count/", json=body, headers=auth(api.ro)).json()
    assert count == {"count": 2}
    sel = {"sources": ["photos"], "query": view.query.to_dict(), "select": ["caption"], "fields": "attributes"}
    rows = api.client.post("/api/query", json=sel, headers=auth(api.ro)).json()["results"]
    assert [r["attributes"] for r in rows] == [{"caption": "blue water"}, {}]
    for bad, status in (
        ({"query": {"field": "a", "op": "explode"}}, 400),
        ({"query": {"and": []}}, 400),
        ({"nope": 1}, 400),
        ({"sources": "photos"}, 400),
        ({"page_size": 5000}, 400),
    ):
        r = api.client.post("/api/query", json=bad, headers=auth(api.ro))
        assert r.status_code == status and r.json()["status"] == status, bad
    r = api.client.post(
        "/api/query", content=b"{not json", headers={**auth(api.ro), "content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["status"] == 422
    rnd = {"datasource": "photos", "random": True, "seed": 5, "page_size": 4, "fields": "source"}
    first = api.client.post("/api/query", json=rnd, headers=auth(api.ro)).json()
    assert "seed=5" in first["next"]


def test_signed_urls(api: SimpleNamespace, tmp_path: Path) -> None:
    c = api.client
    rows = {r["path"]: r for r in collect(api, {"sources": "photos", "page_size": 50})}
    url = rows["Aqua.jpg"]["image_direct_url"]
    r = c.get(url)  # no Authorization header needed
    assert r.status_code == 200 and r.content == (api.root / "Aqua.jpg").read_bytes()
    seg = next(x for x in rows["Aqua.jpg"]["latents"] if x["latent_type"] == "seg")
    assert c.get(seg["file_direct_url"]).content == (api.root / "png" / "Aqua.png").read_bytes()
    parts = urlsplit(url)
    sig = parse_qs(parts.query)["sig"][0]
    exp = parse_qs(parts.query)["exp"][0]
    tampered_sig = sig[:-2] + ("AA" if not sig.endswith("AA") else "BB")
    assert c.get(url.replace(sig, tampered_sig)).status_code == 403
    assert c.get(url.replace("/Aqua.jpg?", "/Dune.jpg?")).status_code == 403  # signature is per path
    assert c.get(url.replace(f"exp={exp}", f"exp={int(exp) + 10}")).status_code == 403
    assert c.get(f"/files/{api.ds.id}/Aqua.jpg").status_code == 403
    secret = api.engine.secret()
    expired = file_url("http://testserver", secret, api.ds.id, "Aqua.jpg", int(time.time()) - 5)
    r = c.get(expired)
    assert r.status_code == 403 and r.json() == {"error": "signature expired", "status": 403}
    # paths that would leave the root: 404, signed or not
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", api.root / "link.txt")
    exp_ok = int(time.time()) + 60
    for evil in ("../secret.txt", "sub/../../secret.txt", "sub/../Aqua.jpg", "./Aqua.jpg", "/etc/passwd"):
        # validly signed, percent-encoded so that the client does not normalize the dots away
        sig_ok = sign(secret, "file", str(api.ds.id), evil, exp_ok)
        r = c.get(f"/files/{api.ds.id}/{quote(evil, safe='')}?exp={exp_ok}&sig={sig_ok}")
        assert r.status_code == 404 and r.json()["status"] == 404, evil
        for raw in (quote(evil, safe=""), evil.replace(".", "%2E"), evil.replace("/", "%2F")):
            r = c.get(f"/files/{api.ds.id}/{raw}?exp={exp_ok}&sig=x")
            assert r.status_code == 404 and r.json()["status"] == 404, raw
    assert c.get(file_url("http://testserver", secret, api.ds.id, "link.txt", exp_ok)).status_code == 404
    assert c.get(file_url("http://testserver", secret, api.ds.id, "missing.jpg", exp_ok)).status_code == 404
    assert c.get(file_url("http://testserver", secret, 999, "Aqua.jpg", exp_ok)).status_code == 404
    # blobs as attributes: signed URLs too
    api.ds.update_metadata("Blinds.jpg", {"raw": b"\x00blob\xff"})
    rows = {r["path"]: r for r in collect(api, {"sources": "photos", "page_size": 50})}
    blob = rows["Blinds.jpg"]["attributes"]["raw"]
    assert c.get(blob).content == b"\x00blob\xff"
    assert c.get(blob.replace("sig=", "sig=A")).status_code == 403


def test_errors_are_json(api: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    c = api.client
    r = c.get("/nope")
    assert r.status_code == 404 and r.json()["status"] == 404
    r = c.delete("/api/images/", headers=auth(api.ro))
    assert r.status_code == 405 and r.json()["status"] == 405
    import datago.engine.server.context as server_mod

    def boom(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(server_mod, "page_rows", boom)
    r = c.get("/api/images/", headers=auth(api.ro))
    assert r.status_code == 500 and r.json() == {"error": "internal server error", "status": 500}
    assert "Traceback" not in r.text and "secret internals" not in r.text


def test_http_paging_stable_while_inserting(api: SimpleNamespace) -> None:
    api.ds.add_datapoints({"path": f"s/{i:03d}.jpg"} for i in range(60))
    before = sorted(int(r["id"]) for r in collect(api, {"page_size": 2000, "fields": "source"}))
    seen: list[int] = []
    r = api.client.get("/api/images/", params={"page_size": 7, "fields": "source"}, headers=auth(api.ro))
    step = 0
    while True:
        body = r.json()
        seen += [int(x["id"]) for x in body["results"]]
        step += 1
        api.ds.add_datapoints({"path": f"late/{step}-{j}.jpg"} for j in range(3))
        if not body["next"]:
            break
        r = api.client.get(body["next"], headers=auth(api.ro))
    assert len(seen) == len(set(seen)) and [i for i in seen if i in set(before)] == before


def test_pages_computed_ahead_are_dropped_after_writes(api: SimpleNamespace) -> None:
    params = {"sources": "photos", "page_size": 2, "fields": "path,attributes"}
    first = api.client.get("/api/images/", params=params, headers=auth(api.ro)).json()
    assert [r["path"] for r in first["results"]] == ["Aqua.jpg", "Blinds.jpg"]
    time.sleep(0.2)  # let the server compute the next page ahead
    api.ds.update_metadata("Dune.jpg", {"aesthetic": 9.5})  # on page 2
    second = api.client.get(first["next"], headers=auth(api.ro)).json()
    assert second["results"][0]["path"] == "Dune.jpg"
    assert second["results"][0]["attributes"]["aesthetic"] == 9.5
    # unchanged data: the page computed ahead is served, and equals a fresh computation
    again = api.client.get(second["next"], headers=auth(api.ro)).json()
    fresh = TestClient(create_app(api.engine)).get(second["next"], headers=auth(api.ro)).json()
    assert again["results"] == fresh["results"] and again["results"]


def test_injection_via_api(api: SimpleNamespace) -> None:
    c, h = api.client, auth(api.ro)
    with api.engine.read() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(datapoints)).scalar_one()
    for params in (
        {"attributes": "caption') OR 1=1 --:x"},
        {"attributes": "caption:' OR '1'='1"},
        {"sources": "photos' OR '1'='1"},
        {"tags": "nature' OR 1=1 --"},
        {"has_attributes": 'x"; DROP TABLE datapoints; --'},
        {"query": '{"field": "caption\' OR 1=1; --", "op": "is_not_null"}'},
    ):
        r = c.get("/api/images/", params=params, headers=h)
        if "sources" in params:  # an unknown datasource, named in a 404
            assert r.status_code == 404 and repr(params["sources"]) in r.json()["error"], params
            continue
        assert r.status_code == 200 and r.json()["results"] == [], params
    evil = "a'); DELETE FROM datapoints; --"
    body = {"updates": [{"path": "Aqua.jpg", "metadata": {evil: "x'); DROP TABLE fields; --"}}]}
    assert c.post("/api/datasources/photos/metadata", json=body, headers=auth(api.rw)).status_code == 200
    assert listed(api, has_attributes=evil) == photos("Aqua.jpg")
    assert listed(api, attributes=f"{evil}:x'); DROP TABLE fields; --") == photos("Aqua.jpg")
    with api.engine.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(datapoints)).scalar_one() == n
    assert evil in api.ds.fields


def test_serve_in_background_real_uvicorn(api: SimpleNamespace) -> None:
    base, key, stop = serve_in_background(api.engine)
    try:
        assert base.startswith("http://127.0.0.1:")
        with httpx.Client(timeout=10) as h:
            assert h.get(f"{base}/api/images/").status_code == 401
            t0 = time.perf_counter()
            for _ in range(10):
                assert h.get(f"{base}/api/health").status_code == 200
            assert time.perf_counter() - t0 < 0.35  # TCP_NODELAY: no 40 ms Nagle/delayed-ACK stall
            r = h.get(f"{base}/api/images/", params={"sources": "photos", "page_size": 3}, headers=auth(key))
            assert r.status_code == 200 and r.json()["next"].startswith(base + "/api/images/")
            first = r.json()["results"][0]
            assert first["image_direct_url"].startswith(base + "/files/")
            img = h.get(first["image_direct_url"])  # fetchable without headers
            assert img.status_code == 200 and img.content == (api.root / "Aqua.jpg").read_bytes()
            # the config as_ml_dataset hands to the native loader points at a server of this engine
            cfg = api.ds[api.ds["tags"].has_tag("nature")].all().ml_dataset_config(page_size=2)
            sc = cfg["source_config"]
            assert cfg["source_type"] == "db" and sc["sources"] == "photos" and sc["page_size"] == 2
            r = h.get(
                sc["api_url"] + "images/", params={"query": sc["query"], "fields": "path"}, headers=auth(sc["api_key"])
            )
            assert sorted(x["path"] for x in r.json()["results"]) == ["Aqua.jpg", "Dune.jpg", "FreshFlower.jpg"]
        # a raw request with literal dot segments (HTTP clients normalize them away)
        host, port = base.removeprefix("http://").split(":")
        for target in (f"/files/{api.ds.id}/../../../../etc/passwd", f"/files/{api.ds.id}/sub/../Aqua.jpg"):
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(
                    f"GET {target}?exp=9999999999&sig=x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
                )
                reply = b""
                while chunk := sock.recv(65536):
                    reply += chunk
            assert reply.startswith(b"HTTP/1.1 404"), reply[:200]
            assert b"root:" not in reply
    finally:
        stop()
        api.engine.dispose()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base}/api/health", timeout=2)
    assert all(not t.name.startswith("background-") for t in list_tokens(get_engine(api.engine)))


def test_cli_tokens(api: SimpleNamespace, capsys: pytest.CaptureFixture[str]) -> None:
    url = api.engine.url
    try:
        assert cli.main(["token", "create", "--name", "ci", "--read-only", "--db", url]) == 0
        key = capsys.readouterr().out.strip()
        assert key.startswith("dg_")
        assert api.client.get("/api/images/", headers=auth(key)).status_code == 200
        body = {"updates": [{"path": "Aqua.jpg", "metadata": {"x": 1}}]}
        assert api.client.post("/api/datasources/photos/metadata", json=body, headers=auth(key)).status_code == 403
        assert cli.main(["token", "list", "--db", url]) == 0
        out = capsys.readouterr().out
        assert "ci\tread-only" in out and key not in out
        assert cli.main(["token", "create", "--name", "ci", "--db", url]) == 1  # name in use
        assert "exists" in capsys.readouterr().err
        assert cli.main(["token", "revoke", "ci", "--db", url]) == 0
        assert api.client.get("/api/images/", headers=auth(key)).status_code == 401
        assert cli.main(["token", "revoke", "ci", "--db", url]) == 1
        assert cli.main(["token"]) == 2
        assert cli.main(["source", "list", "--db", url]) == 0
        assert "photos\t" in capsys.readouterr().out
    finally:
        get_engine(url).dispose()


def test_out_of_range_values_are_client_errors(api: SimpleNamespace) -> None:
    c, h = api.client, auth(api.ro)
    huge = "9" * 30
    for params in (
        {"short_edge__gte": huge},
        {"pixel_count__lte": "-" + huge},
        {"cursor": huge},
        {"partitions_count": huge, "partition": 0},
        {"as_of": huge},
        {"duplicate_state": huge},
        {"page_size": huge},
        {"query": '{"field": "aesthetic", "op": "gt", "value": NaN}'},
        {"attributes": "caption:a\x00b"},
        {"tags": "nature\x00"},
    ):
        r = c.get("/api/images/", params=params, headers=h)
        assert r.status_code == 400 and r.json()["status"] == 400, (params, r.text)
    r = c.get("/api/images/", params={"page_size": 2001}, headers=h)
    assert r.json() == {"error": "page_size must be <= 2000, got 2001", "status": 400}
    for body in ({"as_of": int(huge)}, {"page_size": True}, {"page_size": 2.5}, {"random": True, "seed": 2**64}):
        r = c.post("/api/query", json=body, headers=h)
        assert r.status_code == 400 and r.json()["status"] == 400, (body, r.text)
    # ints beyond 64 bits in filters compare instead of failing
    assert listed(api, attributes=f"aesthetic__lt:{huge}") == photos("Aqua.jpg", "Blinds.jpg", "Dune.jpg")
    body = {"query": {"not": {"field": "aesthetic", "op": "gt", "value": -int(huge)}}, "fields": "path"}
    r = c.post("/api/query", json=body, headers=h)
    assert r.status_code == 200 and len(r.json()["results"]) == len(PHOTO_PATHS) + 2 - 3
    # builtin fields in attribute filters: the value's text matches by type, on every backend
    wide = api.ds[api.ds["width"] >= 1024].all().paths
    assert wide and listed(api, sources="photos", attributes="width__gte:1024") == photos(*wide)
    assert listed(api, attributes="path__icontains:AQUA") == photos("Aqua.jpg", "png/Aqua.png")
    # a name that cannot exist is an unknown datasource (404); excluding it excludes nothing
    r = api.client.get("/api/images/", params={"sources": "photos\x00"}, headers=auth(api.ro))
    assert r.status_code == 404 and "no datasource named 'photos\\x00'" in r.json()["error"]
    assert len(listed(api, sources__ne="photos\x00")) == len(PHOTO_PATHS) + 2
    w = auth(api.rw)
    r = c.post("/api/datasources/photos%00/metadata", json={"updates": []}, headers=w)
    assert r.status_code == 404 and r.json()["status"] == 404
    for metadata in ({"aesthetic": float(huge)}, {"views": int(huge)}, {"caption": "a\x00"}):
        body = {"updates": [{"path": "Blinds.jpg", "metadata": metadata}]}
        r = c.post("/api/datasources/photos/metadata", json=body, headers=w)
        if metadata.get("aesthetic"):
            assert r.status_code == 200  # a large float is a float
            continue
        assert r.status_code == 400 and "Blinds.jpg" in r.json()["error"], r.text
    assert "views" not in api.ds.fields


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_datago_serve_command(
    api: SimpleNamespace, capsys: pytest.CaptureFixture[str], child_env: dict[str, str]
) -> None:
    """``datago serve`` as a separate process on 127.0.0.1, queried over real HTTP."""
    url = api.engine.url
    assert cli.main(["token", "create", "--name", "serve-test", "--read-only", "--db", url]) == 0
    key = capsys.readouterr().out.strip()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "datago.engine.cli", "serve", "--db", url, "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env)
    try:
        with httpx.Client(timeout=10) as h:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                try:
                    if h.get(f"{base}/api/health").json() == {"ok": True}:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "datago serve did not start"
                time.sleep(0.1)
            r = h.get(f"{base}/api/images/")
            assert r.status_code == 401 and r.json()["status"] == 401
            params = {"sources": "photos", "page_size": 4, "tags": "nature"}
            r = h.get(f"{base}/api/images/", params=params, headers=auth(key))
            assert r.status_code == 200
            body = r.json()
            assert [x["path"] for x in body["results"]] == ["Aqua.jpg", "Dune.jpg", "FreshFlower.jpg"]
            assert body["next"] is None
            img = h.get(body["results"][0]["image_direct_url"])  # signed, fetched without a token
            assert img.status_code == 200 and img.content == (api.root / "Aqua.jpg").read_bytes()
            r = h.get(f"{base}/api/images/", params={"page_size": 2, "fields": "path"}, headers=auth(key))
            assert r.json()["next"].startswith(f"{base}/api/images/?")
            assert h.get(f"{base}/api/images/count/", params=params, headers=auth(key)).json() == {"count": 3}
            write = {"updates": [{"path": "Aqua.jpg", "metadata": {"x": 1}}]}
            r = h.post(f"{base}/api/datasources/photos/metadata", json=write, headers=auth(key))
            assert r.status_code == 403
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out
    assert "Traceback" not in out
