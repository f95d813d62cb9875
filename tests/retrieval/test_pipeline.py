"""Retrieval on the real sample knowledge base: linking through redirects, fact ranking, modes, errors."""

import pytest

from kgqa.errors import InvalidQuestion, KnowledgeBaseMissing
from qa.engine import QAEngine
from retrieval.facts import rank_facts, load_facts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(sample_kb):
    engine = QAEngine(sample_kb)
    engine.retrieve("warm up", k=1)  # loads retrieval only, never the LM
    return engine


def test_linking_through_a_real_redirect_alias(engine):
    from sqlalchemy import select

    from kg.store import Alias, Entity

    with engine._kb.session() as session:
        alias, title = session.execute(
            select(Alias.alias, Entity.title).join(Entity, Entity.entity_id == Alias.entity_id)
            .where(Alias.source == "redirect", Alias.alias.like("% %")).order_by(Alias.alias).limit(1)
        ).one()
    linked = engine._pipeline.link(f"What do we know about {alias}?")
    assert [e.title for e in linked] == [title]
    assert linked[0].alias == alias and linked[0].mention == alias


def test_capital_of_alabama_ranks_the_capital_fact_first(engine):
    entities = engine._pipeline.link("What is the capital of Alabama?")
    assert [e.title for e in entities] == ["Alabama"]
    with engine._kb.session() as session:
        ranked = rank_facts("What is the capital of Alabama?", load_facts(session, entities, lambda t: t))
    assert (ranked[0].subject, ranked[0].predicate, ranked[0].object) == ("Alabama", "capital", "Montgomery, Alabama")


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid", "graph"])
def test_every_mode_finds_the_article_of_a_named_entity(engine, mode):
    hits = engine.retrieve("Who wrote Animal Farm?", k=5, mode=mode)
    assert 0 < len(hits) <= 5
    assert hits[0].title == "Animal Farm"
    assert all(h.url.startswith("https://en.wikipedia.org/wiki/") for h in hits)
    if mode == "graph":
        assert "graph" in hits[0].sources


def test_bad_questions_and_modes_are_refused(engine):
    with pytest.raises(InvalidQuestion):
        engine.retrieve("   ")
    with pytest.raises(InvalidQuestion):
        engine.retrieve("x" * (engine.settings.max_question_chars + 1))
    with pytest.raises(ValueError):
        engine.retrieve("Alabama", mode="telepathy")


def test_missing_knowledge_base_says_to_ingest(tmp_settings):
    with pytest.raises(KnowledgeBaseMissing, match="kgqa ingest"):
        QAEngine(tmp_settings).retrieve("What is the capital of Alabama?")
    assert not (tmp_settings.data_dir / "kgqa.db").exists()


def test_graph_mode_ranks_first_the_passage_stating_the_asked_fact(engine):
    hits = engine.retrieve("What is the capital of Alabama?", k=5, mode="graph")
    assert hits[0].title == "Alabama" and "Montgomery" in hits[0].text
    assert "facts" in hits[0].sources
