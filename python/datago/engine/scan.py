"""Scanning a datasource root (local folder, http(s) base URL or ``s3://`` bucket prefix) and
reading files from it. Bucket roots (see ``objstore``) are read over HTTP through presigned URLs."""

from __future__ import annotations

import io
import logging
import os
import shutil
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urljoin

from tqdm.auto import tqdm

from . import objstore

log = logging.getLogger("datago.engine")

HEADER_BYTES = 64 * 1024
MAX_HEADER_BYTES = 2 * 1024 * 1024


def is_http(root: str) -> bool:
    """True when ``root`` is read over HTTP: an http(s) URL, or a bucket (``s3://``) whose files
    are read through presigned URLs (:func:`file_url`)."""
    return root.startswith("http://") or root.startswith("https://") or objstore.is_bucket(root)


def normalize_root(root: str | os.PathLike[str]) -> str:
    """An absolute local folder path, an http(s) URL ending with ``/``, or ``s3://bucket/prefix/``.

    Raises:
        FileNotFoundError: a local root that is not an existing folder; a bucket that does not exist.
        PermissionError: a bucket that refuses the credentials (names the S3 error code).
        OSError: a bucket in another region, an unreachable endpoint.
        ValueError: an unknown URL scheme (``hdfs://``), naming the supported ones.
    """
    root = os.fspath(root)
    objstore.check_scheme(root)
    if objstore.is_bucket(root):
        return objstore.normalize_root(root)
    root = root.removeprefix("file://")
    if is_http(root):
        return root if root.endswith("/") else root + "/"
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"datasource root {str(path)!r} is not a folder")
    return str(path)


def safe_relpath(path: str) -> str:
    """Validate a datapoint path: relative, ``/``-separated, no ``..``, ``.`` or empty parts.

    Raises:
        ValueError: the path could escape the root.
    """
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        raise ValueError(f"invalid datapoint path {path!r}")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid datapoint path {path!r}")
    return path


def image_info(fp: Any) -> tuple[int | None, int | None, str | None]:
    """``(width, height, format)`` from an image header, or ``(None, None, None)`` when the file
    is not an image Pillow recognizes.

    Only the header is parsed (Pillow's format plugins, as ``Image.open`` runs them): no pixel
    is decoded, so huge images cost no more than small ones, and Pillow's decompression-bomb
    limit (which guards decoding) neither warns nor refuses here.

    Args:
        fp: a binary file object positioned anywhere (it is rewound), left open.
    """
    from PIL import Image

    try:
        fp.seek(0)
        prefix = fp.read(16)
    except (OSError, ValueError):
        return None, None, None
    Image.init()  # registers every format plugin (once)
    for fmt in list(Image.ID):
        factory, accept = Image.OPEN[fmt]
        try:
            if accept is not None:
                ok = accept(prefix)
                if not ok or isinstance(ok, str):  # a str: "looks like it, unsupported"
                    continue
            fp.seek(0)
            im = factory(fp, "")
        except Exception:  # not this format (plugins raise SyntaxError, ValueError, ...)
            continue
        try:
            return int(im.width), int(im.height), im.format
        finally:
            im.fp = None  # the caller owns fp
    return None, None, None


def list_local(root: str) -> list[str]:
    """Relative paths of all files under ``root`` (hidden files and folders skipped), sorted.

    A symlink whose target is outside ``root`` (or is not a regular file) is skipped, with a
    warning naming it: a scan never stores what lies outside its root. Symlinked folders are not
    followed.
    """
    out: list[str] = []
    base = os.path.realpath(root)
    inside = base.rstrip(os.sep) + os.sep
    outside: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames:
            if name.startswith("."):
                continue
            rel = (name if rel_dir == "." else f"{rel_dir}/{name}").replace(os.sep, "/")
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                target = os.path.realpath(full)
                if not target.startswith(inside) or not os.path.isfile(target):
                    outside.append(rel)
                    continue
            out.append(rel)
    if outside:
        log.warning(
            "scan of %s: skipped %d symlink(s) leading outside the root or to no file, e.g. %s",
            root,
            len(outside),
            ", ".join(repr(p) for p in sorted(outside)[:5]),
        )
    return sorted(out)


def probe_local(root: str, rel: str) -> dict[str, Any] | None:
    """Datapoint record for a local file (None if it vanished, or leads outside the root)."""
    full = local_file(root, rel)
    if full is None:
        return None
    try:
        size = os.stat(full).st_size
        with open(full, "rb") as f:
            width, height, fmt = image_info(f)
    except OSError:
        return None
    return {"path": rel, "size": size, "width": width, "height": height, "format": fmt}


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            for k, v in attrs:
                if k == "href" and v:
                    self.links.append(v)


def list_http(client: Any, root: str, max_depth: int = 32) -> list[str]:
    """Relative paths of the files an http root lists: either a JSON array of paths (or
    ``{"files": [...]}``) at the root URL, or HTML directory listings (``<a href>``; links ending
    with ``/`` are folders, followed recursively within the root; hidden folders are not fetched).

    Raises:
        httpx.HTTPError: the root cannot be fetched.
    """
    resp = client.get(root)
    resp.raise_for_status()
    if "json" in resp.headers.get("content-type", ""):
        data = resp.json()
        items = data.get("files", []) if isinstance(data, dict) else data
        return sorted({p for p in (_listed_path(str(p).lstrip("/")) for p in items) if p is not None})
    out: set[str] = set()
    todo = [(root, resp.text, 0)]
    seen = {root}
    while todo:
        base, html, depth = todo.pop()
        parser = _Links()
        parser.feed(html)
        for href in parser.links:
            url = urljoin(base, href.split("#", 1)[0].split("?", 1)[0])
            if not url.startswith(root) or url == root or url in seen:
                continue
            seen.add(url)
            rel = unquote(url[len(root) :])
            if url.endswith("/"):
                if depth < max_depth and not any(part.startswith(".") for part in rel.split("/")):
                    sub = client.get(url)
                    if sub.status_code == 200:
                        todo.append((url, sub.text, depth + 1))
                continue
            listed = _listed_path(rel)
            if listed is not None:
                out.add(listed)
    return sorted(out)


def _listed_path(rel: str) -> str | None:
    """``rel`` when it is a valid datapoint path outside hidden files and folders (as
    :func:`list_local` lists them), else None (a listing entry that is skipped)."""
    try:
        safe_relpath(rel)
    except ValueError:
        return None
    return None if any(part.startswith(".") for part in rel.split("/")) else rel


def file_url(root: str, rel: str) -> str:
    """URL of a datapoint under an http root (a presigned GET under a bucket root)."""
    if objstore.is_bucket(root):
        return objstore.presign(root, rel)
    return root + quote(rel)


def probe_http(client: Any, root: str, rel: str) -> dict[str, Any] | None:
    """Datapoint record for a file under an http root: a ranged GET of the header for the image
    fields (more is read if the header does not fit), the size from Content-Range or
    Content-Length. None when the file cannot be fetched."""
    url = file_url(root, rel)
    want = HEADER_BYTES
    while True:
        try:
            with client.stream("GET", url, headers={"Range": f"bytes=0-{want - 1}"}) as resp:
                if resp.status_code not in (200, 206):
                    return None
                size = None
                crange = resp.headers.get("content-range", "")
                if "/" in crange and crange.rsplit("/", 1)[1].isdigit():
                    size = int(crange.rsplit("/", 1)[1])
                elif resp.status_code == 200 and resp.headers.get("content-length", "").isdigit():
                    size = int(resp.headers["content-length"])
                buf = bytearray()
                for chunk in resp.iter_bytes():
                    buf.extend(chunk)
                    if len(buf) >= want:
                        break
        except Exception:
            return None
        if size is None and len(buf) < want:
            size = len(buf)
        width, height, fmt = image_info(io.BytesIO(bytes(buf[:want])))
        truncated = size is None or size > want
        if fmt is not None or not truncated or want >= MAX_HEADER_BYTES:
            return {"path": rel, "size": size, "width": width, "height": height, "format": fmt}
        want *= 4


def probe_all(root: str, paths: list[str], progress: bool, desc: str, max_workers: int = 8) -> list[dict[str, Any]]:
    """Probe files in parallel (thread pool) with a tqdm progress bar; vanished/unreadable files
    are left out."""
    if not paths:
        return []
    out: list[dict[str, Any]] = []
    client = None
    if is_http(root):
        import httpx

        client = httpx.Client(timeout=30, follow_redirects=True)

        def probe(rel: str) -> dict[str, Any] | None:
            return probe_http(client, root, rel)
    else:

        def probe(rel: str) -> dict[str, Any] | None:
            return probe_local(root, rel)

    try:
        with (
            ThreadPoolExecutor(max_workers=max_workers) as pool,
            tqdm(total=len(paths), desc=desc, unit="file", disable=not progress) as bar,
        ):
            for rec in pool.map(probe, paths):
                bar.update(1)
                if rec is not None:
                    out.append(rec)
    finally:
        if client is not None:
            client.close()
    return out


def list_files(root: str) -> list[str]:
    """All file paths of a root (local, http or bucket)."""
    if objstore.is_bucket(root):
        return objstore.list_keys(root)
    if is_http(root):
        import httpx

        with httpx.Client(timeout=30, follow_redirects=True) as client:
            return list_http(client, root)
    return list_local(root)


def local_file(root: str, rel: str) -> Path | None:
    """The local file of ``rel`` under a local ``root``, or None if it would escape the root
    (``..``, absolute path, symlink leading outside) or is not a regular file."""
    try:
        safe_relpath(rel)
    except ValueError:
        return None
    base = os.path.realpath(root)
    full = os.path.realpath(os.path.join(base, *rel.split("/")))
    if not full.startswith(base.rstrip(os.sep) + os.sep) or not os.path.isfile(full):
        return None
    return Path(full)


def download(
    root: str,
    paths: Iterable[str],
    target_dir: str | os.PathLike[str],
    progress: bool = True,
    max_workers: int = 8,
) -> list[Path]:
    """Copy (local root) or GET (http root) files into ``target_dir`` keeping relative paths.

    Returns:
        The written files, in the order of ``paths``.

    Raises:
        FileNotFoundError: a file is missing from a local root.
        ValueError: a path that would escape ``target_dir``.
        httpx.HTTPStatusError: a failed GET.
    """
    paths = list(paths)
    target = Path(target_dir)
    target.mkdir(parents=True, exist_ok=True)
    client = None
    if is_http(root):
        import httpx

        client = httpx.Client(timeout=60, follow_redirects=True)

    def one(rel: str) -> Path:
        safe_relpath(rel)
        dest = target.joinpath(*rel.split("/"))
        dest.parent.mkdir(parents=True, exist_ok=True)
        if client is not None:
            with client.stream("GET", file_url(root, rel)) as resp:
                resp.raise_for_status()
                tmp = dest.with_name(dest.name + ".part")
                with open(tmp, "wb") as f:
                    for chunk in resp.iter_bytes():
                        f.write(chunk)
                os.replace(tmp, dest)
        else:
            src = local_file(root, rel)
            if src is None:
                raise FileNotFoundError(f"{rel!r} is not a file under {root!r}")
            shutil.copyfile(src, dest)
        return dest

    try:
        with (
            ThreadPoolExecutor(max_workers=max_workers) as pool,
            tqdm(total=len(paths), desc="download", unit="file", disable=not progress) as bar,
        ):
            out = []
            for p in pool.map(one, paths):
                bar.update(1)
                out.append(p)
            return out
    finally:
        if client is not None:
            client.close()


def read_bytes(root: str, rel: str) -> bytes:
    """Content of a datapoint file.

    Raises:
        FileNotFoundError: not a file under a local root.
        httpx.HTTPStatusError: a failed GET.
    """
    if is_http(root):
        import httpx

        resp = httpx.get(file_url(root, rel), timeout=60, follow_redirects=True)
        resp.raise_for_status()
        return resp.content
    src = local_file(root, rel)
    if src is None:
        raise FileNotFoundError(f"{rel!r} is not a file under {root!r}")
    return src.read_bytes()
