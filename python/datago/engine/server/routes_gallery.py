"""Server routes: the gallery (``/gallery``), a page of a query's datapoints as thumbnails with
their metadata, and the thumbnails it shows (``/thumbs/{datasource_id}/{path}``).

``Datasource.visualize()`` (DagsHub opens Voxel51 there) makes a signed gallery link: the view
(datasource, query, select, as_of, page_size) is in the URL and signed with the engine's
secret, so a browser needs no API key. Pages follow the view's keyset paging: ``cursors`` holds
the cursor of each page before this one (comma-separated), so Previous is one fewer.

Thumbnails are made with Pillow (JPEG ``draft`` decodes at a reduced scale; EXIF orientation
applied), at most :data:`THUMB_PX` on a side, JPEG, kept in a small in-memory LRU cache. Their
URLs carry a file signature (a thumbnail shows less than the file it is signed for).
"""

from __future__ import annotations

import html
import io
import json
import threading
import time
from collections import OrderedDict
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ..dataroom import ApiError
from ..executor import fetch_page
from ..results import Datapoint
from ..scan import is_http, local_file, read_bytes
from ..signing import quote_path, sign, verify
from .context import Context

router = APIRouter()

#: longest side of a thumbnail (pixels)
THUMB_PX = 256
#: thumbnails kept in memory
THUMB_CACHE = 512
#: lifetime of the thumbnail URLs of a gallery page (seconds)
THUMB_TTL = 3600

_cache: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
_cache_lock = threading.Lock()


def make_thumbnail(data: bytes, px: int = THUMB_PX) -> bytes:
    """A JPEG of the image ``data`` at most ``px`` pixels on a side (RGB, EXIF rotation applied).

    Raises:
        OSError: not an image Pillow can decode.
    """
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as im:
        if im.format == "JPEG":
            im.draft("RGB", (px, px))
        im = ImageOps.exif_transpose(im)
        im.thumbnail((px, px))
        if im.mode != "RGB":
            rgba = im.convert("RGBA")
            im = Image.new("RGB", rgba.size, (255, 255, 255))
            im.paste(rgba, mask=rgba.getchannel("A"))
        out = io.BytesIO()
        im.save(out, "JPEG", quality=85)
    return out.getvalue()


@router.get("/thumbs/{ds_id}/{path:path}")
def get_thumbnail(ctx: Context, ds_id: str, path: str, exp: str | None = None, sig: str | None = None) -> Response:
    """A thumbnail (JPEG) of a datapoint file, for a signed file URL's ``exp`` and ``sig``.

    Errors: 403 bad/expired signature, 404 no such file, 415 not an image.
    """
    root = ctx.signed_root(ds_id, path, exp, sig)
    stamp: Any = None
    if not is_http(root):
        full = local_file(root, path)
        if full is None:
            raise ApiError(404, "not found")
        st = full.stat()
        stamp = (st.st_mtime_ns, st.st_size)
    key = (ctx.engine.url, int(ds_id), path, stamp)
    with _cache_lock:
        body = _cache.get(key)
        if body is not None:
            _cache.move_to_end(key)
    if body is None:
        try:
            data = read_bytes(root, path)
        except (OSError, ValueError):
            raise ApiError(404, "not found") from None
        except Exception:  # an http root that failed (httpx errors)
            raise ApiError(502, f"cannot fetch {path!r} from its root") from None
        try:
            body = make_thumbnail(data)
        except (OSError, ValueError, SyntaxError):
            raise ApiError(415, f"{path!r} is not an image") from None
        with _cache_lock:
            _cache[key] = body
            while len(_cache) > THUMB_CACHE:
                _cache.popitem(last=False)
    return Response(body, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


def _fmt(value: Any, ftype: str | None) -> str:
    if ftype == "bytes":
        return f"blob {str(value)[:12]}…" if isinstance(value, str) else "blob"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "…"


_STYLE = """
body{margin:0;font:13px/1.35 system-ui,sans-serif;background:#f4f4f5;color:#18181b}
header{box-sizing:border-box;height:64px;overflow:hidden;padding:8px 16px;background:#18181b;color:#fafafa}
header h1{font-size:16px;margin:0 0 4px}
header p{margin:0;color:#a1a1aa;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
nav{box-sizing:border-box;height:36px;padding:8px 16px}nav a,nav span{margin-right:16px}
main{display:grid;grid-template-columns:repeat(auto-fill,280px);gap:12px;padding:0 16px 16px}
.card{background:#fff;border:1px solid #e4e4e7;border-radius:6px;overflow:hidden}
.thumb{width:280px;height:264px;display:flex;align-items:center;justify-content:center;background:#fff}
.thumb img{display:block;max-width:256px;max-height:256px}
.thumb .none{color:#71717a;font-size:20px}
table{width:100%;border-collapse:collapse;table-layout:fixed}
td{padding:2px 8px;border-top:1px solid #f4f4f5;word-wrap:break-word}
td.k{width:38%;color:#52525b}
"""

# after load: each thumbnail's box in CSS pixels and whether it decoded (for tests and tools)
_SCRIPT = """
window.addEventListener('load',function(){
 var imgs=document.querySelectorAll('img.t');var ok=0;
 imgs.forEach(function(im){var r=im.getBoundingClientRect();
  im.setAttribute('data-box',[Math.round(r.left+scrollX),Math.round(r.top+scrollY),Math.round(r.width),Math.round(r.height)].join(','));
  im.setAttribute('data-decoded',im.complete&&im.naturalWidth>0?'1':'0');if(im.complete&&im.naturalWidth>0)ok++;});
 document.body.setAttribute('data-thumbs-loaded',ok+'/'+imgs.length);});
"""


@router.get("/gallery", response_class=HTMLResponse)
def gallery(
    request: Request,
    ctx: Context,
    view: str,
    exp: str | None = None,
    sig: str | None = None,
    cursors: str = "",
) -> HTMLResponse:
    """One page of the gallery of a signed view (see the module).

    Errors: 403 bad/expired signature, 400 malformed view or cursor, 404 no such datasource.
    """
    engine = ctx.engine
    reason = verify(engine.secret(), "gallery", "", view, exp, sig)
    if reason:
        raise ApiError(403, reason)
    try:
        data = json.loads(view)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        page_size = int(data.get("page_size", 48))
        if not 1 <= page_size <= 500:
            raise ValueError("page_size outside 1..500")
        name = data["datasource"]
        if not isinstance(name, str):
            raise ValueError("datasource is not a str")
        ds = ctx.datasource(name).with_view(data)
    except (ValueError, KeyError, TypeError) as e:
        raise ApiError(400, f"malformed gallery view: {e}") from None
    chain = [c for c in cursors.split(",") if c]
    start = time.perf_counter()
    try:
        records, next_cursor = fetch_page(engine, ds._spec(limit=page_size, cursor=chain[-1] if chain else None))
        total = ds.count()
    except ValueError as e:
        raise ApiError(400, str(e)) from None
    elapsed_ms = (time.perf_counter() - start) * 1000
    types = ds.fields
    base = ctx.base_url(request)
    exp_thumb = int(time.time()) + THUMB_TTL
    secret = engine.secret()

    def link(chain_: list[str]) -> str:
        params = {"view": view, "exp": exp or "", "sig": sig or ""}
        if chain_:
            params["cursors"] = ",".join(chain_)
        return f"{base}/gallery?{urlencode(params)}"

    cards = []
    for rec in records:
        d = Datapoint(ds, rec)
        if d.width:  # an image the scan could read
            thumb = (
                f"{base}/thumbs/{ds.id}/{quote_path(d.path)}?exp={exp_thumb}"
                f"&sig={sign(secret, 'file', str(ds.id), d.path, exp_thumb)}"
            )
            pic = f'<img class="t" src="{html.escape(thumb)}" alt="{html.escape(d.path)}" loading="eager">'
        else:
            ext = d.path.rsplit(".", 1)[-1] if "." in d.path else "file"
            pic = f'<span class="none">.{html.escape(ext)}</span>'
        rows = [
            ("path", d.path),
            ("datapoint_id", str(d.datapoint_id)),
            ("size", "" if d.width is None else f"{d.width}×{d.height} {d.format or ''}"),
        ]
        rows += [(k, _fmt(v, types.get(k))) for k, v in sorted(d.metadata.items())]
        table = "".join(f'<tr><td class="k">{html.escape(k)}</td><td>{html.escape(v)}</td></tr>' for k, v in rows)
        cards.append(
            f'<div class="card" data-path="{html.escape(d.path)}" data-id="{d.datapoint_id}">'
            f'<div class="thumb">{pic}</div><table>{table}</table></div>'
        )
    page = len(chain) + 1
    pages = max(1, -(-total // page_size))
    nav = [f"<span>page {page} of {pages}</span>"]
    if chain:
        nav.append(f'<a id="prev" href="{html.escape(link(chain[:-1]))}">← previous</a>')
    if next_cursor:
        nav.append(f'<a id="next" href="{html.escape(link([*chain, next_cursor]))}">next →</a>')
    described = "everything" if ds.query is None else ds.query.to_json()
    if ds.as_of_time is not None:
        described += f" as of {ds.as_of_time.isoformat()}"
    body = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(ds.name)} · datago gallery</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>{html.escape(ds.name)} — {total} datapoints</h1>"
        f"<p>{html.escape(described)} · query {elapsed_ms:.1f} ms</p></header>"
        f"<nav>{''.join(nav)}</nav><main>{''.join(cards)}</main><script>{_SCRIPT}</script></body></html>"
    )
    return HTMLResponse(body)
