"""The engine's HTTP server (FastAPI): the dataroom image API plus engine queries.

Endpoints (JSON; errors are ``{"error": message, "status": code}``, never a stack trace):

- ``GET /api/images/``: dataroom image listing. Parameters: ``page_size`` (1..2000, default
  100), ``cursor``, ``fields``, ``sources``, ``sources__ne``, ``tags`` (any of), ``tags__all``,
  ``tags__ne`` (none of), ``tags__ne_all`` (not all of), ``tags__empty`` (true/false),
  ``attributes=name__op:value,...`` (ops eq ne gt gte lt lte contains icontains),
  ``has_attributes``, ``lacks_attributes``, ``has_masks``, ``lacks_masks``, ``has_latents``,
  ``lacks_latents``, ``return_latents``, ``short_edge__gte/lte``, ``pixel_count__gte/lte``,
  ``duplicate_state`` (int, or ``None``), ``partitions_count`` + ``partition`` (datapoints with
  ``id % partitions_count == partition``), and the extensions ``query`` (an engine query in
  JSON, AND-ed with the rest) and ``as_of`` (µs since the epoch). Answers ``{"next": absolute
  URL or null, "results": [...]}`` (see :mod:`datago.engine.dataroom` for the result shape).
- ``GET /api/images/random/``: the same in a seeded random order (``seed``; a random one is
  chosen and kept in ``next`` when absent).
- ``GET /api/images/count/``: ``{"count": n}`` for the same filters.
- ``POST /api/query``: body ``{"datasource": name | "sources": [names], "query": engine query,
  "select": [fields], "as_of": µs, "page_size", "cursor", "fields", "return_latents",
  "partitions_count", "partition", "random": bool, "seed"}``; same answer as ``/api/images/``.
  ``next`` carries the cursor in its query string: POST the same body to it.
- ``POST /api/query/count/``: ``{"count": n}`` for such a body.
- ``GET /api/datasources/``: names, roots, datapoint counts and fields.
- ``POST /api/datasources/{name}/metadata`` (write): ``{"updates": [{"path": p, "metadata":
  {...}}]}``; datetimes as ``{"$datetime": iso}``, bytes as ``{"$bytes": base64}``.
- ``POST /api/datasources/{name}/scan`` (write): register new files; ``{"added": n}``.
- ``GET /files/{datasource_id}/{path}?exp=&sig=``, ``GET /blobs/{sha256}?exp=&sig=``: signed,
  expiring, no token needed (403 bad/expired signature, 404 for paths that would leave the
  root or do not exist).
- ``GET /gallery?view=&exp=&sig=[&cursors=]``: an HTML page of a query's datapoints
  (thumbnails with their metadata, paged), from a signed link ``Datasource.visualize()`` makes;
  ``GET /thumbs/{datasource_id}/{path}?exp=&sig=``: a JPEG thumbnail for a file signature.
- ``GET /api/health``: ``{"ok": true}``, no token.

Auth: ``Authorization: Token <key>`` (keys from ``datago token create``); 401 without a valid
token, checked before the body is read (:mod:`.guard`), 403 for a read-only token on a write
endpoint (:mod:`.auth`, a FastAPI dependency).

Limits: bodies over ``max_body_bytes`` are 413; queries deeper, larger or with more metadata
lookups than :mod:`datago.engine.query`'s limits, statements the database refuses for their size,
and statements over ``statement_timeout_s`` are 400; an unknown datasource is a 404 naming it. URLs
in answers are built on ``public_url``, else an allowed ``Host``, else the address the client
reached (:meth:`.context.ServerContext.base_url`).

Modules: :mod:`.app` (``create_app``: routers, error answers), :mod:`.context` (state shared by
the routes), :mod:`.guard` (auth and body limit before the application, 500s that keep the
connection), :mod:`.auth`, :mod:`.routes_images` (listings, queries), :mod:`.routes_datasources`,
:mod:`.routes_files` (signed files and blobs),
:mod:`.routes_gallery` (the gallery and thumbnails), :mod:`.prefetch` (pages computed ahead),
:mod:`.background` (uvicorn: ``run``, ``serve_in_background``).
"""

from __future__ import annotations

from .app import create_app
from .background import run, serve_in_background

__all__ = ["create_app", "run", "serve_in_background"]
