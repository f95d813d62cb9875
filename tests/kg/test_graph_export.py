"""The NetworkX snapshot holds facts and categories; the JSON-lines export streams the whole graph from SQL."""

from __future__ import annotations

import io
import json

from sqlalchemy import func, select

from kg.export import export_jsonl
from kg.graph import build_graph, graph_lines, load_graph
from kg.store import Triple
from tests.helpers.tiny_kb import open_store, tiny_kb  # noqa: F401 (fixture)


def test_snapshot_leaves_links_out_and_the_export_streams_them(tiny_kb):
    snapshot = load_graph(tiny_kb)
    with open_store(tiny_kb)() as session:
        full = build_graph(session, links=True)
        stored_links = session.scalar(select(func.count()).select_from(Triple).where(Triple.kind == "links_to"))
        out = io.StringIO()
        lines = export_jsonl(graph_lines(session), out)
    assert stored_links > 0
    assert {kind for _, _, kind in snapshot.edges(data="kind")} <= {"infobox", "in_category"}
    assert sum(1 for _, _, kind in full.edges(data="kind") if kind == "links_to") == stored_links
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(rows) == lines
    exported = {(r["subject"], r["object"], r["predicate"]) for r in rows if r["type"] == "edge"}
    assert exported == {(s, o, key) for s, o, key in full.edges(keys=True)}
    nodes = {r["id"]: {k: v for k, v in r.items() if k not in ("type", "id")} for r in rows if r["type"] == "node"}
    assert nodes == dict(full.nodes(data=True))  # objects outside the KB appear once, as missing or literal
    assert len(nodes) == sum(1 for r in rows if r["type"] == "node")
