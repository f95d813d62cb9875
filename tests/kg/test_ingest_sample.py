"""The real sample dump, ingested once (``sample_kb``): counts against the raw XML, the issue's facts, lookups, export."""

from __future__ import annotations

import bz2
import json
import re
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from kg.graph import load_graph
from kg.queries import entity_view, get_passage, passages_by_vector_ids, resolve_entity
from kg.store import Entity, Page, Passage, Redirect, Triple, make_engine, session_factory
from tests.helpers.kg_dumps import assert_consistent, snapshot

pytestmark = pytest.mark.slow
NS = "{http://www.mediawiki.org/xml/export-0.10/}"


@pytest.fixture(scope="module")
def dump_facts(sample_dump) -> dict:
    """What the dump holds, read with the standard library's own XML parser (independent of kg.dump_reader)."""
    root = ET.fromstring(bz2.decompress(sample_dump.read_bytes()))
    articles, redirects, other = {}, 0, 0
    for page in root.iter(f"{NS}page"):
        title = page.find(f"{NS}title").text
        if page.find(f"{NS}ns").text != "0":
            other += 1
        elif page.find(f"{NS}redirect") is not None:
            redirects += 1
        elif not title.startswith("List of "):
            revision = page.find(f"{NS}revision")
            articles[title] = (int(page.find(f"{NS}id").text), int(revision.find(f"{NS}id").text),
                               revision.find(f"{NS}text").text or "")
    return {"articles": articles, "redirects": redirects, "other": other}


@pytest.fixture(scope="module")
def session(sample_kb):
    engine = make_engine(sample_kb.database_url)
    with session_factory(engine)() as session:
        yield session
    engine.dispose()


def test_counts_match_the_dump(session, dump_facts):
    articles = dump_facts["articles"]
    assert session.scalar(select(func.count()).select_from(Page)) == len(articles)
    assert session.scalar(select(func.count()).select_from(Redirect)) == dump_facts["redirects"]
    stored = dict(session.execute(select(Page.title, Page.rev_id)).all())
    assert stored == {title: rev for title, (_, rev, _) in articles.items()}
    assert session.scalar(select(Page.title).where(Page.title.like("Wikipedia:%"))) is None
    # every sizeable article has passages; for prose articles their number follows the text size
    per_page = dict(session.execute(select(Passage.title, func.count()).group_by(Passage.title)).all())
    assert all(per_page.get(title) for title, (_, _, text) in articles.items() if len(text) > 5000)
    for title in ("Albert Einstein", "Alabama", "Aristotle", "Animal Farm", "Apollo 11"):
        assert per_page[title] >= len(articles[title][2]) // 8000, title
    # one in_category triple per distinct category link in the raw text
    for title in ("Alabama", "Albert Einstein", "Animal Farm"):
        page_id, _, text = articles[title]
        categories = {" ".join(c.strip().split("|")[0].replace("_", " ").split())
                      for c in re.findall(r"\[\[\s*Category\s*:([^\]]+)\]\]", text)}
        stored_categories = set(session.scalars(select(Triple.object_title).where(
            Triple.subject_id == page_id, Triple.kind == "in_category")))
        assert stored_categories == {f"Category:{c[:1].upper()}{c[1:]}" for c in categories}


@pytest.fixture(scope="module")
def graph(sample_kb):
    return load_graph(sample_kb)


def test_issue_facts_with_provenance(session, dump_facts, graph):
    for subject, obj in (("Alabama", "Montgomery, Alabama"), ("Algeria", "Algiers")):
        page_id, rev_id, _ = dump_facts["articles"][subject]
        triple = session.scalars(select(Triple).where(Triple.subject_id == page_id, Triple.predicate == "capital",
                                                      Triple.kind == "infobox")).one()
        assert (triple.object_title, triple.page_id, triple.rev_id) == (obj, page_id, rev_id)
        assert triple.field.lower() == "capital"  # the raw key as written in the infobox ("Capital" for Alabama)
    edges = graph.get_edge_data("Alabama", "Montgomery, Alabama")
    assert edges["capital"]["kind"] == "infobox" and edges["capital"]["field"] == "Capital"
    assert graph.get_edge_data("Algeria", "Algiers")["capital"]["rev_id"] == dump_facts["articles"]["Algeria"][1]


def test_einstein_template_values_not_empty(session, dump_facts):
    page_id = dump_facts["articles"]["Albert Einstein"][0]
    facts = session.execute(select(Triple.predicate, Triple.object_title, Triple.object_literal).where(
        Triple.subject_id == page_id, Triple.kind == "infobox")).all()
    by_key = {}
    for predicate, title, literal in facts:
        by_key.setdefault(predicate, []).append(title or literal)
    assert by_key["birth_date"] == ["1879-03-14"]
    assert "Photoelectric effect" in by_key["known_for"] and all(by_key["known_for"])


def test_alias_lookup_through_redirect(session, dump_facts):
    # AccessibleComputing redirects to "Computer accessibility", which is not in the sample;
    # pick redirects whose target is an article of the sample, from the raw dump.
    redirects = dict(session.execute(select(Redirect.title, Redirect.target)).all())
    usable = {r: t for r, t in redirects.items() if t in dump_facts["articles"]}
    assert usable
    for name, target in usable.items():
        assert resolve_entity(session, name).title == target
        assert resolve_entity(session, name.upper().replace(" ", "  ")).title == target  # folded alias
    assert resolve_entity(session, "no such thing at all") is None


def test_entity_view_and_passages(session, dump_facts):
    algeria = resolve_entity(session, "algeria")
    view = entity_view(session, algeria.entity_id)
    capital = next(f for f in view.facts if f.predicate == "capital")
    assert capital.object == "Algiers" and capital.object_is_entity and capital.field == "capital"
    assert view.categories and view.out_neighbours
    linkers = {title for title, (_, _, text) in dump_facts["articles"].items()
               if title != "Algeria" and ("[[Algeria]]" in text or "[[Algeria|" in text)}
    in_titles = {n.title for n in view.in_neighbours}
    assert linkers & in_titles and in_titles <= set(dump_facts["articles"])
    passage = session.scalars(select(Passage).where(Passage.page_id == algeria.entity_id).order_by(Passage.ordinal)).first()
    assert passage.id.startswith(f"{algeria.entity_id}:{passage.rev_id}:")
    assert get_passage(session, passage.id).text == passage.text
    assert [p.id for p in passages_by_vector_ids(session, [passage.vector_id, -1, 10**12])] == [passage.id]


def test_index_matches_store(sample_kb):
    assert_consistent(snapshot(sample_kb))


def test_graph_nodes_and_edges(session, graph):
    entities = session.scalar(select(func.count()).select_from(Entity))
    assert sum(1 for _, kind in graph.nodes(data="kind") if kind == "entity") == entities
    assert graph.nodes["Category:Member states of the African Union"]["kind"] == "category"
    kinds = {attrs["kind"] for _, _, attrs in graph.edges(data=True)}
    assert kinds == {"infobox", "in_category"}  # links live in the CSR link graph and stream from SQL
    assert all(attrs["page_id"] and attrs["rev_id"] for _, _, attrs in graph.edges(data=True))


def test_cli_show_stats_export(sample_kb, session, tmp_path):
    from app.cli import main

    runner = CliRunner()
    shown = runner.invoke(main, ["kg", "show", "Algeria"], obj={"settings": sample_kb})
    assert shown.exit_code == 0, shown.output
    assert "capital -> Algiers" in shown.output and "field capital" in shown.output
    stats = runner.invoke(main, ["kg", "stats", "--json"], obj={"settings": sample_kb})
    assert stats.exit_code == 0 and json.loads(stats.output)["passages"] == json.loads(stats.output)["vectors"]
    out = tmp_path / "graph.jsonl"
    exported = runner.invoke(main, ["kg", "export", "--format", "jsonl", "-o", str(out)], obj={"settings": sample_kb})
    assert exported.exit_code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {"type": "edge", "subject": "Algeria", "object": "Algiers"}.items() <= next(
        r for r in rows if r.get("subject") == "Algeria" and r.get("predicate") == "capital").items()
    links = [r for r in rows if r.get("kind") == "links_to"]  # streamed from SQL, every one of them
    assert len(links) == session.scalar(select(func.count()).select_from(Triple).where(Triple.kind == "links_to"))
    nodes = {r["id"] for r in rows if r["type"] == "node"}
    assert all(r["subject"] in nodes and r["object"] in nodes for r in rows if r["type"] == "edge")
    graphml = tmp_path / "g.graphml"
    assert runner.invoke(main, ["kg", "export", "--format", "graphml", "-o", str(graphml)],
                         obj={"settings": sample_kb}).exit_code == 0
    assert graphml.read_text().startswith("<?xml")
    missing = runner.invoke(main, ["kg", "show", "Zzyzx Nothing"], obj={"settings": sample_kb})
    assert missing.exit_code == 2
