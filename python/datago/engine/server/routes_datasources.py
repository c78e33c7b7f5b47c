"""Server routes: ``/api/datasources/`` (list) and its write endpoints (metadata, scan)."""

from __future__ import annotations

from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import APIRouter, Body

from .. import writes
from ..dataroom import ApiError
from ..db import datapoints, datasources, fields
from ..values import decode_json
from .auth import ReadToken, WriteToken
from .context import Context

router = APIRouter()


@router.get("/api/datasources/")
def list_datasources(ctx: Context, _token: ReadToken) -> list[dict[str, Any]]:
    with ctx.engine.read() as conn:
        n = dict(
            conn.execute(
                sa.select(datapoints.c.datasource_id, sa.func.count()).group_by(datapoints.c.datasource_id)
            ).all()
        )
        fs: dict[int, dict[str, str]] = {}
        for ds_id, name, ftype in conn.execute(sa.select(fields.c.datasource_id, fields.c.name, fields.c.type)):
            fs.setdefault(ds_id, {})[name] = ftype
        rows = conn.execute(sa.select(datasources).order_by(datasources.c.name)).all()
    return [
        {"id": r.id, "name": r.name, "root": r.root, "datapoints": n.get(r.id, 0), "fields": fs.get(r.id, {})}
        for r in rows
    ]


@router.post("/api/datasources/{name}/metadata")
def post_metadata(
    ctx: Context,
    _token: WriteToken,
    name: str,
    body: dict[str, Any] = Body(...),  # noqa: B008
) -> dict[str, int]:
    ds = ctx.datasource(name)
    items = body.get("updates")
    if not isinstance(items, list):
        raise ApiError(400, 'expected {"updates": [{"path": ..., "metadata": {...}}]}')
    updates = []
    try:
        for item in items:
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("path"), str)
                or not isinstance(item.get("metadata"), dict)
            ):
                raise ValueError('each update is {"path": str, "metadata": {...}}')
            updates.append((item["path"], {k: decode_json(v) for k, v in item["metadata"].items()}))
        return {"updated": writes.write_metadata(ctx.engine, ds.id, updates)}
    except (TypeError, ValueError) as e:
        raise ApiError(400, str(e)) from None
    except KeyError as e:
        raise ApiError(400, str(e.args[0]) if e.args else "unknown path") from None


@router.post("/api/datasources/{name}/scan")
def post_scan(ctx: Context, _token: WriteToken, name: str) -> dict[str, int]:
    ds = ctx.datasource(name)
    try:
        return {"added": ds.scan(progress=False)}
    except OSError as e:
        raise ApiError(400, f"cannot scan {ds.root!r}: {e.strerror or e}") from None
    except httpx.HTTPError as e:  # an http root that cannot be listed
        raise ApiError(502, f"cannot scan {ds.root!r}: {e}") from None
