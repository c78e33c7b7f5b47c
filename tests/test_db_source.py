"""source_type "db": datago's dataroom source, against a fake dataroom API on 127.0.0.1.

The fake API (written here with http.server) serves ``GET /api/images/`` like dataroom: the
``fields`` asked for, ``page_size`` pages linked by ``next``, the ``sources`` / ``tags`` filters,
``partitions_count`` + ``partition``, ``return_latents``, a token check, and the files behind the
URLs it hands out: crops of real photos (tests/data/photos), their masks (mode L PNG), an additional
image and a latent. Every request is logged so that the tests can check the query parameters.

The last test runs the real thing: datago's own engine server (``datago.engine``) over a folder of
real photos, read through the db source.
"""

from __future__ import annotations

import gc
import io
import json
import logging
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import numpy as np
import pytest
from PIL import Image
from test_client import buckets, nearest

import datago
from photos_util import loader_config

KEY = "test-key-123"
FORBIDDEN_KEY = "no-access-key"  # a valid token without the right to read: 403
N_ROWS = 18


# -- the fake dataroom -------------------------------------------------------------------------


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def make_rows(photos: list[Path]) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """N_ROWS dataroom rows cut from the real photos, and the files their URLs point to
    ({path: bytes}; URLs are filled in by the server)."""
    rng = np.random.default_rng(3)
    sources = []
    for p in [q for q in photos if min(Image.open(q).size) > 420][:6]:  # crops are up to 419 px
        im = Image.open(p)
        im.draft("RGB", (640, 640))
        sources.append(im.convert("RGB"))
    rows, files = [], {}
    for i in range(N_ROWS):
        src = sources[i % len(sources)]
        w, h = int(rng.integers(200, 420)), int(rng.integers(200, 420))
        x, y = int(rng.integers(0, src.width - w)), int(rng.integers(0, src.height - h))
        crop = src.crop((x, y, x + w, y + h))
        grey = np.asarray(crop.convert("L"))
        mask = Image.fromarray(np.where(grey > grey.mean(), 255, 0).astype(np.uint8), "L")
        rid = f"img-{i:03d}"
        files[f"{rid}.jpg"] = _jpeg(crop)
        files[f"{rid}.mask.png"] = _png(mask)
        files[f"{rid}.masked.jpg"] = _jpeg(crop.resize((w // 2, h // 2)))
        files[f"{rid}.vae"] = np.arange(4, dtype=np.float16).tobytes() + rid.encode()
        rows.append(
            {
                "id": rid,
                "source": "photos" if i % 3 else "other",
                "width": w,
                "height": h,
                "attributes": {
                    "index": i,
                    "score": round(float(rng.uniform()), 3),
                    "caption": f'crop {i} of {photos[i % len(photos)].stem} — "real" <photo>',
                    "nsfw": i % 5 == 0,
                    "size": [w, h],
                    "meta": {"k": None, "v": [1, 2.5]},
                },
                "tags": ["nature", "even"] if i % 2 == 0 else ["nature"],
                "coca_embedding": {"vector": [float(i), -0.5, 0.25 * i]},
                "duplicate_state": None if i % 4 == 0 else i % 3,
                "latents": [
                    {"latent_type": "segmentation", "file": f"{rid}.mask.png", "is_mask": True},
                    {"latent_type": "masked_image", "file": f"{rid}.masked.jpg", "is_mask": False},
                    {"latent_type": "latent_vae", "file": f"{rid}.vae", "is_mask": False},
                ],
                "mask_mean": float(np.asarray(mask).mean()),
            }
        )
    return rows, files


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-answer (a stopped client, a cancelled fetch) is no error."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeDataroom:
    """A dataroom image API on 127.0.0.1 (see the module docstring)."""

    def __init__(self, rows: list[dict[str, Any]], files: dict[str, bytes]) -> None:
        self.rows, self.files = rows, files
        self.requests: list[tuple[str, dict[str, str], str | None]] = []  # (path, query, Authorization)
        self.lock = threading.Lock()
        self.missing: set[str] = set()  # files answered 404
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.handle(self)

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FakeDataroom:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def api_url(self) -> str:
        return self.base + "/api/"

    def page_requests(self) -> list[tuple[str, dict[str, str], str | None]]:
        with self.lock:
            return list(self.requests)

    def _send(self, h: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str) -> None:
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        if parts.path.startswith("/files/"):
            name = parts.path.removeprefix("/files/")
            if name in self.files and name not in self.missing:
                self._send(h, 200, self.files[name], "application/octet-stream")
            else:
                self._send(h, 404, b"not found", "text/plain")
            return
        if parts.path not in ("/api/images/", "/api/images/random/"):
            self._send(h, 404, b'{"detail": "Not found."}', "application/json")
            return
        q = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        auth = h.headers.get("Authorization")
        with self.lock:
            self.requests.append((parts.path, q, auth))
        if auth == f"Token {FORBIDDEN_KEY}":
            body = b'{"detail": "You do not have permission to perform this action."}'
            self._send(h, 403, body, "application/json")
            return
        if auth != f"Token {KEY}":
            self._send(h, 401, b'{"detail": "Invalid token."}', "application/json")
            return
        rows = self.select(q)
        if parts.path.endswith("/random/"):
            rng = np.random.default_rng(int(q.get("seed", "0")))
            rows = [rows[i] for i in rng.permutation(len(rows))]
        size, cursor = int(q["page_size"]), int(q.get("cursor", "0"))
        page = rows[cursor : cursor + size]
        nxt = None
        if cursor + size < len(rows):
            nxt = f"{self.base}{parts.path}?{urlencode({**q, 'cursor': cursor + size})}"
        fields = set(q.get("fields", "").split(","))
        body = {"next": nxt, "results": [self.render(r, fields, q) for r in page]}
        self._send(h, 200, json.dumps(body).encode(), "application/json")

    def select(self, q: dict[str, str]) -> list[dict[str, Any]]:
        rows = list(enumerate(self.rows))
        if q.get("sources"):
            rows = [(i, r) for i, r in rows if r["source"] in q["sources"].split(",")]
        if q.get("sources__ne"):
            rows = [(i, r) for i, r in rows if r["source"] not in q["sources__ne"].split(",")]
        if q.get("tags"):
            rows = [(i, r) for i, r in rows if set(r["tags"]) & set(q["tags"].split(","))]
        if q.get("tags__ne"):
            rows = [(i, r) for i, r in rows if not set(r["tags"]) & set(q["tags__ne"].split(","))]
        if q.get("partitions_count"):
            n, k = int(q["partitions_count"]), int(q["partition"])
            rows = [(i, r) for i, r in rows if i % n == k]
        return [r for _, r in rows]

    def render(self, row: dict[str, Any], fields: set[str], q: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": row["id"]}
        for k in ("source", "attributes", "tags", "coca_embedding", "duplicate_state", "width", "height"):
            if k in fields:
                out[k] = row[k]
        if "image_direct_url" in fields:
            out["image_direct_url"] = f"{self.base}/files/{row['id']}.jpg"
        if "latents" in fields:
            wanted = set(q.get("return_latents", "").split(","))
            out["latents"] = [
                {
                    "latent_type": lt["latent_type"],
                    "file_direct_url": f"{self.base}/files/{lt['file']}",
                    "is_mask": lt["is_mask"],
                }
                for lt in row["latents"]
                if lt["latent_type"] in wanted
            ]
        return out


@pytest.fixture(scope="module")
def data(photos: list[Path]) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    return make_rows(photos)


@pytest.fixture
def room(data: tuple[list[dict[str, Any]], dict[str, bytes]]) -> Iterator[FakeDataroom]:
    with FakeDataroom(*data) as srv:
        yield srv


NO_CROP = {"crop_and_resize": False}  # images as decoded, no bucket


def db_config(api_url: str, **extra: Any) -> dict[str, Any]:
    """A db config with 256-px buckets and fast HTTP retries."""
    source_config = {"api_url": api_url, "api_key": KEY, "page_size": 5}
    return loader_config("db", source_config, **{"http_retry_backoff": 0.02, "http_max_retries": 2, **extra})


def load(cfg: dict[str, Any]) -> tuple[list[datago.Sample], dict[str, Any]]:
    with datago.DatagoClient(cfg) as client:
        samples = list(client)
        return samples, client.stats()


# -- content -----------------------------------------------------------------------------------

FULL = {"has_masks": "segmentation", "has_latents": "latent_vae,masked_image", "require_embeddings": True}


def test_samples_carry_every_field(room: FakeDataroom, data: tuple) -> None:
    rows = {r["id"]: r for r in data[0]}
    base = datago.live_samples()
    samples, stats = load(db_config(room.api_url, source_config=FULL))
    assert sorted(s.id for s in samples) == sorted(rows)  # workers may reorder within a page
    assert stats["samples_skipped"] == 0
    bs = buckets()
    for s in samples:
        row = rows[s.id]
        assert s.source == row["source"]
        # attributes keep their JSON types
        assert s.attributes == row["attributes"]
        assert type(s.attributes["index"]) is int and type(s.attributes["score"]) is float
        assert type(s.attributes["nsfw"]) is bool and s.attributes["meta"] == {"k": None, "v": [1, 2.5]}
        assert s.tags == row["tags"]
        emb = s.coca_embedding
        assert emb.dtype == np.float32 and emb.tolist() == row["coca_embedding"]["vector"]
        assert s.duplicate_state == (row["duplicate_state"] or 0)
        # the image: the nearest bucket to the photo's aspect ratio
        assert (s.original_width, s.original_height) == (row["width"], row["height"])
        assert s.image.size in bs and s.image.size == nearest(row["width"], row["height"], bs)
        assert s.image.mode == "RGB"
        # the mask: mode L, in the image's bucket, the same picture
        assert set(s.masks) == {"segmentation"}
        m = s.masks["segmentation"]
        assert m.mode == "L" and m.size == s.image.size
        assert abs(float(np.asarray(m).mean()) - row["mask_mean"]) < 20
        assert set(s.additional_images) == {"masked_image"}
        assert s.additional_images["masked_image"].size == s.image.size
        assert s.latents == {"latent_vae": data[1][f"{s.id}.vae"]}
    del samples, s, m, emb
    gc.collect()
    assert datago.live_samples() == base
    # one request per page, with the token and the fields needed
    reqs = room.page_requests()
    assert len(reqs) == -(-N_ROWS // 5)
    for path, q, auth in reqs:
        assert path == "/api/images/" and auth == f"Token {KEY}" and q["page_size"] == "5"
        assert set(q["fields"].split(",")) == {
            "id", "source", "attributes", "width", "height", "tags", "duplicate_state",
            "image_direct_url", "latents", "coca_embedding",
        }  # fmt: skip
        assert q["return_latents"] == "latent_vae,masked_image,segmentation"


def test_filters_are_query_parameters(room: FakeDataroom, data: tuple) -> None:
    sc = {
        "sources": "photos",
        "sources_ne": "junk",
        "tags": ["even"],
        "tags_all": "nature,even",
        "has_attributes": "caption",
        "lacks_attributes": "watermark",
        "min_short_edge": 200,
        "max_pixel_count": 10_000_000,
        "duplicate_state": 0,
        "attributes": "score__gte:0.1",
    }
    samples, _ = load(db_config(room.api_url, source_config=sc))
    want = [r["id"] for r in data[0] if r["source"] == "photos" and "even" in r["tags"]]
    assert sorted(s.id for s in samples) == want and want
    _, q, _ = room.page_requests()[0]
    assert {k: v for k, v in q.items() if k not in ("fields", "page_size")} == {
        "sources": "photos",
        "sources__ne": "junk",
        "tags": "even",
        "tags__all": "nature,even",
        "has_attributes": "caption",
        "lacks_attributes": "watermark",
        "short_edge__gte": "200",
        "pixel_count__lte": "10000000",
        "duplicate_state": "None",
        "attributes": "score__gte:0.1",
    }
    assert "latents" not in q["fields"] and "coca_embedding" not in q["fields"]
    # no masks or latents asked for: none delivered
    assert all(not s.masks and not s.latents and s.coca_embedding.size == 0 for s in samples)


def test_limit_is_exact(room: FakeDataroom) -> None:
    for limit in (1, 7):
        samples, stats = load(db_config(room.api_url, limit=limit, source_config={"page_size": 3}))
        assert len(samples) == limit == stats["samples_produced"]


def test_rank_split_is_disjoint_and_complete(room: FakeDataroom, data: tuple) -> None:
    seen: list[str] = []
    for rank in range(3):
        samples, _ = load(db_config(room.api_url, rank=rank, world_size=3, image_config=NO_CROP))
        seen += [s.id for s in samples]
        assert samples
    assert sorted(seen) == sorted(r["id"] for r in data[0])
    parts = {(q["partitions_count"], q["partition"]) for _, q, _ in room.page_requests()}
    assert parts == {("3", "0"), ("3", "1"), ("3", "2")}


def test_random_sampling_is_seeded(room: FakeDataroom, data: tuple) -> None:
    def order(seed: int) -> list[str]:
        cfg = db_config(room.api_url, image_config=NO_CROP, source_config={"random_sampling": True, "seed": seed})
        cfg.update(num_threads=1, max_connections=1)  # one worker per stage: delivery in listing order
        return [s.id for s in load(cfg)[0]]

    a, b, c = order(11), order(11), order(12)
    assert a == b and a != c
    assert sorted(a) == sorted(r["id"] for r in data[0])
    path, q, _ = room.page_requests()[0]
    assert path == "/api/images/random/" and q["seed"] == "11"


def test_datago_spellings(room: FakeDataroom, data: tuple) -> None:
    """The keys of datago's Go db source (sources__ne, tags__ne, return_latents,
    return_duplicate_state, -1 for an unset rank / world_size) work as they did there."""
    sc = {
        "sources__ne": "other",
        "tags__ne": "even",
        "return_latents": "segmentation",
        "return_duplicate_state": True,
        "rank": -1,
        "world_size": -1,
    }
    samples, _ = load(db_config(room.api_url, rank=1, world_size=2, source_config=sc))
    want = [r["id"] for i, r in enumerate(data[0]) if r["source"] != "other" and "even" not in r["tags"] and i % 2 == 1]
    assert sorted(s.id for s in samples) == want and want
    assert all(set(s.masks) == {"segmentation"} and not s.latents for s in samples)
    _, q, _ = room.page_requests()[0]
    assert q["sources__ne"] == "other" and q["tags__ne"] == "even" and q["return_latents"] == "segmentation"
    assert (q["partitions_count"], q["partition"]) == ("2", "1") and "latents" in q["fields"].split(",")


def _first_error(cfg: dict[str, Any], use_iter: bool) -> BaseException | None:
    """The exception the first sample raises (get_sample, or iteration), from a thread that must
    end within 30 s: a refused API is an error, never a hang."""
    box: list[BaseException | None] = [None]

    def run() -> None:
        try:
            with datago.DatagoClient(cfg) as client:
                if use_iter:
                    list(client)
                else:
                    client.get_sample(timeout=20)
        except BaseException as e:  # handed to the test
            box[0] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "the client hangs on a refused API"
    return box[0]


@pytest.mark.parametrize("use_iter", [False, True], ids=["get_sample", "iter"])
@pytest.mark.parametrize(("key", "code"), [("wrong", 401), (FORBIDDEN_KEY, 403)])
def test_unauthorized_raises_oserror(room: FakeDataroom, key: str, code: int, use_iter: bool) -> None:
    err = _first_error(db_config(room.api_url, source_config={"api_key": key}), use_iter)
    assert isinstance(err, OSError), repr(err)
    assert str(code) in str(err) and room.api_url + "images/" in str(err)
    assert "DATAROOM_API_KEY" in str(err)
    assert len(room.page_requests()) == 1  # not retried


def test_image_404_is_skipped_and_counted(room: FakeDataroom, data: tuple, caplog: pytest.LogCaptureFixture) -> None:
    datago.initialize_logging("warn")
    caplog.set_level(logging.WARNING, logger="datago")
    # a missing image, and a missing mask of another row
    room.missing = {"img-004.jpg", "img-007.mask.png"}
    samples, stats = load(db_config(room.api_url, image_config=NO_CROP, source_config=FULL))
    assert sorted(s.id for s in samples) == sorted(r["id"] for r in data[0] if r["id"] not in ("img-004", "img-007"))
    assert stats["samples_skipped"] == 2 and stats["skipped_reasons"] == {"fetch_error": 2}
    err = caplog.text  # the core's warnings reach the "datago" logger
    for rid, url in (("img-004", f"{room.base}/files/img-004.jpg"), ("img-007", f"{room.base}/files/img-007.mask.png")):
        lines = [ln for ln in err.splitlines() if f"id={rid}" in ln]
        assert lines and url in lines[0] and "404" in lines[0], err


def test_config_errors(room: FakeDataroom, monkeypatch: pytest.MonkeyPatch) -> None:
    for sc, key in (
        ({"bogus": 1}, "bogus"),
        ({"tags": {"a": 1}}, "tags"),
        ({"sources": ["a", ["b"]]}, "sources"),
        ({"page_size": 5000}, "page_size"),
        ({"page_size": "ten"}, "page_size"),
        ({"query": "{not json"}, "query"),
        ({"sources_ne": "a", "sources__ne": "b"}, "sources__ne"),
        ({"rank": 3, "world_size": 2}, "rank"),
    ):
        with pytest.raises(ValueError, match=rf"source_config\.{key}\b"):
            datago.DatagoClient(db_config(room.api_url, source_config=sc))
    monkeypatch.delenv("DATAROOM_API_URL", raising=False)
    cfg = db_config(room.api_url)
    del cfg["source_config"]["api_url"]
    with pytest.raises(ValueError, match="DATAROOM_API_URL"):
        datago.DatagoClient(cfg)
    # the environment variables (datago's way)
    monkeypatch.setenv("DATAROOM_API_URL", room.api_url)
    monkeypatch.setenv("DATAROOM_API_KEY", KEY)
    del cfg["source_config"]["api_key"]
    cfg["limit"] = 2
    assert len(load(cfg)[0]) == 2
    # the config keys win over them
    monkeypatch.setenv("DATAROOM_API_URL", "http://127.0.0.1:9/api/")
    monkeypatch.setenv("DATAROOM_API_KEY", "wrong")
    cfg["source_config"].update(api_url=room.api_url, api_key=KEY)
    assert len(load(cfg)[0]) == 2
    assert all(auth == f"Token {KEY}" for _, _, auth in room.page_requests())


# -- end to end: datago's engine server ----------------------------------------------------------


def test_engine_server_end_to_end(photos: list[Path], tmp_path: Path) -> None:
    import datago.engine as engine_pkg  # a test dependency (the [engine] extra): never skipped
    from datago.engine import datasources
    from datago.engine.db import Engine

    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    names = []
    for i, p in enumerate(photos[:8]):
        im = Image.open(p)
        im.draft("RGB", (800, 800))
        rel = f"sub/{p.name}" if i % 3 == 0 else p.name
        im.convert("RGB").save(root / rel, quality=90)
        names.append(rel)
    engine = Engine(tmp_path / "engine.sqlite")
    try:
        ds = datasources.get_or_create("photos", root, db_url=engine, progress=False)
        with ds.metadata_context() as ctx:
            for i, rel in enumerate(names):
                meta: dict[str, Any] = {"index": i, "score": i / 4, "caption": f"photo {rel}", "keep": i % 2 == 0}
                meta["tags"] = "nature,even" if i % 2 == 0 else "nature"
                if i == 2:
                    meta["duplicate_state"] = 1
                ctx.update_metadata(rel, meta)
        base, key, stop = engine_pkg.serve_in_background(engine)
        try:
            want = {d.datapoint_id: d for d in ds[ds["tags"].has_tag("even")].all()}
            assert len(want) == 4
            cfg = db_config(
                base + "/api/", source_config={"api_key": key, "sources": "photos", "tags": "even", "page_size": 3}
            )
            samples, stats = load(cfg)
            assert sorted(s.id for s in samples) == sorted(str(i) for i in want)
            assert stats["samples_skipped"] == 0
            bs = buckets()
            for s in samples:
                d = want[int(s.id)]
                assert s.source == "photos"
                assert s.attributes == {k: d.metadata[k] for k in ("index", "score", "caption", "keep")}
                assert type(s.attributes["keep"]) is bool and type(s.attributes["score"]) is float
                assert sorted(s.tags) == ["even", "nature"]
                assert s.duplicate_state == d.metadata.get("duplicate_state", 0)
                assert (s.original_width, s.original_height) == (d.width, d.height)
                assert s.image.size == nearest(d.width, d.height, bs)
            del samples, s
            # rank split through the server's partitions
            ids: list[str] = []
            for rank in range(2):
                ids += [s.id for s in load({**cfg, "rank": rank, "world_size": 2, "image_config": {}})[0]]
            assert sorted(ids) == sorted(str(i) for i in want)
            # a typo in sources: a ValueError naming the key and the name (issue 14), not an empty epoch
            err = _first_error(db_config(base + "/api/", source_config={"api_key": key, "sources": "photoz"}), True)
            assert isinstance(err, ValueError), repr(err)
            assert "source_config.sources" in str(err) and '"photoz"' in str(err) and "known: photos" in str(err)
            # the config the engine hands out for a query (its "query" extension)
            qcfg = ds[ds["score"] >= 1.0].all().ml_dataset_config(page_size=2)
            qcfg.update(samples_buffer_size=8)
            got = sorted(s.id for s in load(qcfg)[0])
            assert got == sorted(str(d.datapoint_id) for d in ds[ds["score"] >= 1.0].all()) and got
        finally:
            stop()
    finally:
        engine.dispose()
