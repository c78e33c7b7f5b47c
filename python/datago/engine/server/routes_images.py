"""Server routes: image listings and engine queries (``/api/images/``, ``/api/query``), and
``/api/health``."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from .. import dataroom
from ..dataroom import ApiError, wanted_fields
from ..executor import PageSpec
from ..query import Query
from ..values import check_field_name
from .auth import ReadToken
from .context import Context

router = APIRouter()

QUERY_BODY_KEYS = (
    "datasource",
    "sources",
    "sources__ne",
    "query",
    "select",
    "as_of",
    "page_size",
    "cursor",
    "fields",
    "return_latents",
    "partitions_count",
    "partition",
    "random",
    "seed",
)


def image_page(request: Request, ctx: Context, random: bool) -> Response:
    """A page of ``/api/images/`` (or its ``random/`` form) for the request's parameters."""
    params = dict(request.query_params)
    spec = dataroom.spec_from_params(params, random=random)
    want = wanted_fields(params.get("fields"))
    rl = set(dataroom.csv_list(params.get("return_latents"))) or None
    return ctx.run_page(request, spec, want, rl, {"seed": spec.seed} if random else {})


@router.get("/api/health")
def health() -> dict[str, bool]:
    return {"ok": True}


@router.get("/api/images/")
def images(request: Request, ctx: Context, _token: ReadToken) -> Response:
    return image_page(request, ctx, random=False)


@router.get("/api/images/random/")
def images_random(request: Request, ctx: Context, _token: ReadToken) -> Response:
    return image_page(request, ctx, random=True)


@router.get("/api/images/count/")
def images_count(request: Request, ctx: Context, _token: ReadToken) -> dict[str, int]:
    return ctx.count(dataroom.spec_from_params(dict(request.query_params)))


def spec_from_body(
    body: Mapping[str, Any], cursor: str | None, seed_param: str | None = None
) -> tuple[PageSpec, set[str], set[str] | None]:
    """The page of a POST body; ``cursor`` and ``seed_param`` come from the query string of a
    ``next`` URL (the seed chosen for the first page when the body has none).

    Raises:
        ApiError: 400 for an unknown key or a malformed value.
    """
    if not isinstance(body, Mapping):
        raise ApiError(400, "the body must be a JSON object")
    unknown = sorted(set(body) - set(QUERY_BODY_KEYS))
    if unknown:
        raise ApiError(400, f"unknown key(s) {', '.join(unknown)}; known: {', '.join(QUERY_BODY_KEYS)}")
    sources = body.get("sources")
    if body.get("datasource") is not None:
        sources = [body["datasource"]]
    if sources is not None and (not isinstance(sources, list) or not all(isinstance(s, str) for s in sources)):
        raise ApiError(400, "sources must be a list of datasource names")
    exclude = body.get("sources__ne")
    if exclude is not None and (not isinstance(exclude, list) or not all(isinstance(s, str) for s in exclude)):
        raise ApiError(400, "sources__ne must be a list of datasource names")
    try:
        q = None if body.get("query") is None else Query.from_dict(body["query"])
        select = body.get("select")
        if select is not None:
            if not isinstance(select, list):
                raise ValueError("select must be a list of field names")
            select = [check_field_name(s) for s in select]
    except (TypeError, ValueError) as e:
        raise ApiError(400, f"invalid query: {e}") from None
    spec = PageSpec(source_names=sources, exclude_source_names=exclude, query=q, select=select)
    paging = {
        k: body[k] for k in ("page_size", "cursor", "partitions_count", "partition", "as_of") if body.get(k) is not None
    }
    if cursor:
        paging["cursor"] = cursor
    dataroom.paging_from_params(paging, spec)
    if dataroom.bool_param(body, "random"):
        seed = dataroom.int_param(body, "seed", minimum=0)
        if seed is None:
            seed = dataroom.int_param({"seed": seed_param}, "seed", minimum=0)
        spec.seed = seed if seed is not None else secrets.randbelow(2**31)
    fields_param = body.get("fields")
    if isinstance(fields_param, list):
        fields_param = ",".join(str(f) for f in fields_param)
    if fields_param is not None and not isinstance(fields_param, str):
        raise ApiError(400, "fields must be a list of result keys or a comma-separated str")
    want = wanted_fields(fields_param)
    rl = body.get("return_latents")
    if isinstance(rl, str):
        rl = dataroom.csv_list(rl)
    if rl is not None and (not isinstance(rl, list) or not all(isinstance(t, str) for t in rl)):
        raise ApiError(400, "return_latents must be a list of latent types or a comma-separated str")
    return spec, want, (set(rl) if rl else None)


@router.post("/api/query")
def query(
    request: Request,
    ctx: Context,
    _token: ReadToken,
    body: dict[str, Any] = Body(...),  # noqa: B008
) -> Response:
    params = request.query_params
    spec, want, rl = spec_from_body(body, params.get("cursor"), params.get("seed"))
    seed = {"seed": spec.seed} if spec.seed is not None else {}
    return ctx.run_page(request, spec, want, rl, seed, json.dumps(body, sort_keys=True, default=str))


@router.post("/api/query/count/")
def query_count(ctx: Context, _token: ReadToken, body: dict[str, Any] = Body(...)) -> dict[str, int]:  # noqa: B008
    spec, _, _ = spec_from_body(body, None)
    return ctx.count(spec)
