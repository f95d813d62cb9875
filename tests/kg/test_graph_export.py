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


def test_the_snapshot_stamp_sees_a_reingested_last_page_that_reused_its_row_ids(tmp_path):
    from sqlalchemy import create_engine

    from kg.graph import sql_stamp
    from kg.store import Entity, IngestRun, init_db, session_factory

    engine = create_engine(f"sqlite:///{tmp_path / 'kb.db'}")
    init_db(engine)
    sessions = session_factory(engine)
    with sessions() as session:
        session.add_all([Entity(entity_id=1, title="Testland"), IngestRun(dump="a.xml", status="done", pages=1)])
        session.add(Triple(subject_id=1, predicate="capital", object_literal="Oldtown", kind="infobox", page_id=1, rev_id=1))
        session.commit()
        before = sql_stamp(session)
        # a later ingest rewrites the page: its triples are deleted and new ones written, and SQLite hands out the same ids
        session.query(Triple).delete()
        session.add(IngestRun(dump="b.xml", status="done", pages=1))
        session.add(Triple(subject_id=1, predicate="capital", object_literal="Newtown", kind="infobox", page_id=1, rev_id=2))
        session.commit()
        after = sql_stamp(session)
        same_rows = session.execute(select(func.count(), func.max(Triple.id))).one()
    assert tuple(same_rows) == before[1:3]  # counts and largest ids alone cannot tell
    assert after != before
