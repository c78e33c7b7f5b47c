"""``visualize()`` and the server's ``/gallery`` (DagsHub opens Voxel51 there), on SQLite and
PostgreSQL with real photos: the page's datapoints, metadata, paging and signatures over HTTP,
and the page as a real browser shows it (Debian's headless chromium: the thumbnails must render,
compared pixel by pixel with the server's thumbnails)."""

from __future__ import annotations

import html.parser
import io
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from datago.engine import datasources
from datago.engine.datasource import Datasource
from datago.engine.db import Engine
from datago.engine.server.routes_gallery import THUMB_PX, make_thumbnail
from datago.engine.signing import sign


class _Page(html.parser.HTMLParser):
    """The cards (path, id, metadata rows), thumbnails and links of a gallery page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.cards: list[dict[str, str]] = []
        self.imgs: list[dict[str, str]] = []
        self.links: dict[str, str] = {}
        self.body: dict[str, str] = {}
        self._cells: list[str] = []
        self._in_td = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "div" and a.get("class") == "card":
            self.cards.append({"path": a["data-path"], "id": a["data-id"]})
        elif tag == "img":
            self.imgs.append(a)
        elif tag == "a" and "id" in a:
            self.links[a["id"]] = a["href"]
        elif tag == "body":
            self.body = a
        elif tag == "td":
            self._in_td = True
            self._cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_td = False
            if len(self._cells) == 2:
                self.cards[-1][self._cells[0]] = self._cells[1]
                self._cells = []

    def handle_data(self, data: str) -> None:
        if self._in_td:
            self._cells[-1] += data


def make_source(engine: Engine, root: Path) -> Datasource:
    ds = datasources.get_or_create("photos", root, db_url=engine, progress=False)
    with ds.metadata_context() as ctx:
        ctx.update_metadata(["Aqua.jpg", "Dune.jpg", "sub/Storm.jpg"], {"label": "water", "score": 0.5})
        ctx.update_metadata("Blinds.jpg", {"label": "<b>indoor</b>", "score": 0.25})
    return ds


def test_visualize_serves_a_paged_gallery(engine: Engine, photo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = make_source(engine, photo_root)
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url, *a, **k: opened.append(url) or True)
    view = ds[ds["label"] == "water"]
    url = view.visualize()
    assert opened == [url] and re.match(r"http://127\.0\.0\.1:\d+/gallery\?view=", url)
    assert view.all().visualize(open_browser=False).split("&exp=")[0] == url.split("&exp=")[0]
    with httpx.Client(timeout=30) as client:
        r = client.get(url)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        page = _Page(r.text)
        assert [c["path"] for c in page.cards] == ["Aqua.jpg", "Dune.jpg", "sub/Storm.jpg"]
        assert all(c["label"] == "water" and c["score"] == "0.5" for c in page.cards)
        assert [c["id"] for c in page.cards] == [str(d.datapoint_id) for d in view.all()]
        with Image.open(photo_root / "Aqua.jpg") as im:
            assert page.cards[0]["size"] == f"{im.width}×{im.height} JPEG" and "3 datapoints" in r.text
        for img, card in zip(page.imgs, page.cards, strict=True):
            t = client.get(img["src"])  # no API key: the thumbnail URL is signed
            assert t.status_code == 200 and t.headers["content-type"] == "image/jpeg"
            assert t.content == make_thumbnail((photo_root / card["path"]).read_bytes())
            with Image.open(io.BytesIO(t.content)) as im:
                assert max(im.size) == THUMB_PX
        # metadata is escaped, not markup
        everything = client.get(ds.visualize(open_browser=False)).text
        assert "&lt;b&gt;indoor&lt;/b&gt;" in everything and "<b>indoor</b>" not in everything
        assert ">.txt<" in everything  # a file that is not an image: no thumbnail

        # paging: 9 datapoints, 4 a page
        first = _Page(client.get(ds.visualize(open_browser=False, page_size=4)).text)
        assert "prev" not in first.links and len(first.cards) == 4
        second = _Page(client.get(first.links["next"]).text)
        third = _Page(client.get(second.links["next"]).text)
        assert "next" not in third.links and len(third.cards) == 1
        back = _Page(client.get(second.links["prev"]).text)
        assert back.cards == first.cards
        got = [c["path"] for p in (first, second, third) for c in p.cards]
        assert got == [d.path for d in ds.all()]

        # signatures: a changed view, a bad or expired signature are refused
        q = parse_qs(urlsplit(url).query)
        base = url.split("/gallery")[0]
        tampered = q["view"][0].replace('"water"', '"indoor"')
        assert client.get(f"{base}/gallery", params={**q, "view": tampered}).status_code == 403
        assert client.get(f"{base}/gallery", params={**q, "sig": "0" * 32}).status_code == 403
        secret = engine.secret()
        old = {"view": q["view"][0], "exp": "1000", "sig": sign(secret, "gallery", "", q["view"][0], 1000)}
        r = client.get(f"{base}/gallery", params=old)
        assert r.status_code == 403 and "expired" in r.json()["error"]
        bad_view = '{"datasource": 5}'
        r = client.get(
            f"{base}/gallery",
            params={"view": bad_view, "exp": "9999999999", "sig": sign(secret, "gallery", "", bad_view, 9999999999)},
        )
        assert r.status_code == 400
        thumb = page.imgs[0]["src"]
        assert client.get(thumb.replace("sig=", "sig=0")).status_code == 403
        notes_sig = sign(secret, "file", str(ds.id), "notes.txt", 9999999999)
        notes = f"{base}/thumbs/{ds.id}/notes.txt?exp=9999999999&sig={notes_sig}"
        assert client.get(notes).status_code == 415
    with pytest.raises(ValueError, match="page_size"):
        ds.visualize(open_browser=False, page_size=0)


def test_visualize_uses_the_engine_server_url(engine: Engine, photo_root: Path) -> None:
    """With ``engine.server_url`` (a ``datago serve`` on the same database), the gallery link
    points at that server, which accepts its signature; no server is started in this process."""
    from datago.engine.server import serve_in_background

    ds = make_source(engine, photo_root)
    other = Engine(engine.url, blob_dir=engine.blobs.directory)  # the team server's own handle
    base_url, _key, stop = serve_in_background(other)
    try:
        engine.server_url = base_url + "/"
        url = ds[ds["label"] == "water"].visualize(open_browser=False)
        assert url.startswith(base_url + "/gallery?") and engine._background is None
        page = _Page(httpx.get(url, timeout=30).text)
        assert [c["path"] for c in page.cards] == ["Aqua.jpg", "Dune.jpg", "sub/Storm.jpg"]
    finally:
        engine.server_url = None
        stop()
        other.dispose()


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:  # .ci/run installs it
        pytest.fail("Debian's chromium is needed for the gallery's browser test: apt-get install -y chromium")
    return path


def run_chromium(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",  # root in CI
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--window-size=1280,900",
        "--virtual-time-budget=15000",  # page, thumbnails and the load script, before the capture
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *args,
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def test_gallery_thumbnails_render_in_a_browser(engine: Engine, photo_root: Path, tmp_path: Path) -> None:
    """The gallery of the 4 top-level photos in headless chromium: the DOM (after the page's
    load script) gives each thumbnail's box; in the screenshot each box must show that
    thumbnail (pixel difference small) and differ from the others: a blank, broken or
    misplaced thumbnail fails."""
    ds = make_source(engine, photo_root)
    url = ds[ds["format"] == "JPEG"].visualize(open_browser=False, page_size=4)  # the first 4 of 6
    dom = run_chromium(url, tmp_path, "--dump-dom").stdout
    page = _Page(dom)
    assert [c["path"] for c in page.cards] == ["Aqua.jpg", "Blinds.jpg", "Dune.jpg", "FreshFlower.jpg"]
    assert page.body.get("data-thumbs-loaded") == "4/4", dom[:2000]
    shot = tmp_path / "gallery.png"
    run_chromium(url, tmp_path, f"--screenshot={shot}")
    with Image.open(shot) as im:
        screen = np.asarray(im.convert("RGB")).astype(np.float32)
    assert screen.shape[:2] == (900, 1280)
    crops, thumbs = [], []
    with httpx.Client(timeout=30) as client:
        for img in page.imgs:
            assert img["data-decoded"] == "1"
            x, y, w, h = (int(v) for v in img["data-box"].split(","))
            body = client.get(img["src"]).content
            with Image.open(io.BytesIO(body)) as t:
                thumb = np.asarray(t.convert("RGB")).astype(np.float32)
            assert (w, h) == (thumb.shape[1], thumb.shape[0])  # shown at its own size
            assert y + h <= 900 and x + w <= 1280
            crops.append(screen[y : y + h, x : x + w])
            thumbs.append(thumb)
    for i, crop in enumerate(crops):
        assert crop.std() > 10, f"thumbnail {i} is blank in the screenshot"
        own = float(np.abs(crop - thumbs[i]).mean())
        assert own < 6, f"thumbnail {i} differs from the server's by {own:.1f} per channel"
        for j, other in enumerate(thumbs):
            if j != i and other.shape == crop.shape:
                assert float(np.abs(crop - other).mean()) > 4 * own + 10
    # the page around the thumbnails is the plain background: the check above is not vacuous
    assert float(np.abs(screen[880:900, 0:200] - np.array([244, 244, 245], np.float32)).mean()) < 2
