"""The dataroom page path's fast parts against their plain counterparts: URL signatures, the
columns a page fetches, and page rows in any order."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import pytest

from datago.engine import datasources, executor
from datago.engine.dataroom import Renderer, point_columns, spec_from_params, wanted_fields
from datago.engine.db import Engine
from datago.engine.executor import PageSpec, fetch_page, page_rows
from datago.engine.signing import Signer, sign


@pytest.mark.parametrize("secret", [b"", b"k" * 32, b"\xff" * 64, bytes(range(200))])
def test_signer_signs_like_sign(secret: bytes) -> None:
    signer = Signer(secret, "file", "12", 1_700_000_000)
    for path in ("a.jpg", "", "sous-dossier/été 2024/ü.png", "x" * 300, "a\x00b"):
        assert signer(path) == sign(secret, "file", "12", path, 1_700_000_000)


def test_page_columns_follow_fields() -> None:
    assert point_columns(wanted_fields("attributes,image_direct_url,source")) == ("source", "path")
    assert point_columns(wanted_fields("id")) == ()
    assert point_columns(wanted_fields(None)) == ("source", "path", "size", "width", "height", "format")
    assert spec_from_params({"fields": "width,latents"}).columns == ("width",)


def _pages(engine: Engine, spec: PageSpec) -> list[Any]:
    out = []
    cursor = None
    while True:
        recs, cursor = fetch_page(engine, dataclasses.replace(spec, cursor=cursor))
        out += [(r.id, r.source, r.path, r.size, r.width, r.values) for r in recs]
        if cursor is None:
            return out


def test_page_rows_in_any_order(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page statement's field rows usually come last, but nothing guarantees it: shuffled
    rows give the same pages."""
    ds = datasources.get_or_create("s", tmp_path, db_url=engine, scan=False)
    ds.add_datapoints({"path": f"{i}.jpg", "size": i, "width": 2 * i} for i in range(40))
    with ds.metadata_context() as ctx:
        for i in range(40):
            if i % 6:
                ctx.update_metadata(f"{i}.jpg", {"n": i, "s": f"v{i}", "b": i % 2 == 0} if i % 4 else {"n": -i})
    specs = [PageSpec(limit=7), PageSpec(limit=5, seed=11), PageSpec(limit=9, select=["s"]), PageSpec(select=[])]
    want = [_pages(engine, s) for s in specs]
    assert len(want[0]) == 40 and want[0][1][5] == {"n": ("int", 1), "s": ("str", "v1"), "b": ("bool", False)}
    fetch = executor._fetch_tuples
    rng = random.Random(5)

    def shuffled(result: Any) -> list[Any]:
        rows = list(fetch(result))
        rng.shuffle(rows)
        return rows

    monkeypatch.setattr(executor, "_fetch_tuples", shuffled)
    assert [_pages(engine, s) for s in specs] == want
    # rendering reads only the columns the fields need
    spec = spec_from_params({"page_size": "100", "fields": "size,source,attributes"})
    raw = page_rows(engine, spec)
    assert set(raw.columns) == {"source", "size"}
    results = Renderer("http://h", b"k", {ds.id: str(tmp_path)}, 60, engine.blobs.get).render_page(
        raw, wanted_fields("size,source,attributes")
    )
    assert results[3] == {
        "id": results[3]["id"],
        "source": "s",
        "size": 3,
        "attributes": {"n": 3, "s": "v3", "b": False},
    }
    assert results[4]["attributes"] == {"n": -4}
