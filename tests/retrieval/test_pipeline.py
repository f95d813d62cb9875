"""The retrieval pipeline: every mode over a tiny knowledge base (fast), then on the real sample one (slow)."""

import random

import pytest

from kgqa.errors import InvalidQuestion, KnowledgeBaseMissing
from kgqa.records import LinkedEntity
from models.embedding.embedder import document_text
from qa.engine import QAEngine
from retrieval.facts import load_facts, rank_facts
from retrieval.knowledge_base import KnowledgeBase
from retrieval.fusion import reciprocal_rank_fusion
from retrieval.pipeline import MODES, Rankings, RetrievalPipeline, fuse_graph, fuse_hybrid
from retrieval.tuning import GRAPH_FUSION, HYBRID_FUSION, PLAIN_RRF, GraphFusion, HybridFusion, NamedEntities
from tests.helpers.tiny_kb import HashingEmbedder, tiny_kb  # noqa: F401 (fixture)

# -- a tiny knowledge base: five articles, their redirects, a hashed bag-of-words embedder --------------------


@pytest.fixture(scope="module")
def pipeline(tiny_kb):
    kb = KnowledgeBase(tiny_kb, embedder=HashingEmbedder())
    kb.warm_up()
    return RetrievalPipeline(kb)


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_ranks_first_the_passage_about_the_named_subject(pipeline, mode):
    # the stand-in embedder hashes words, so it knows no meaning: the question names the predicate
    found = pipeline.retrieve("Who is the author of Animal Farm?", k=3, mode=mode)
    top = found.passages[0]
    assert (top.passage_id, top.title) == ("620:3001:0:0", "Animal Farm")
    assert "George Orwell" in top.text and top.url == "https://en.wikipedia.org/wiki/Animal_Farm"
    assert 0 < len(found.passages) <= 3
    assert len({hit.passage_id for hit in found.passages}) == len(found.passages)
    scores = [hit.score for hit in found.passages]
    assert scores == sorted(scores, reverse=True)
    # graph: dense and sparse both rank it first, so it keeps its place and no boost is counted on it
    expected = {"dense": {"dense"}, "sparse": {"sparse"}, "hybrid": {"dense", "sparse"},
                "graph": {"dense", "sparse"}}[mode]
    assert set(top.sources) == expected
    assert (found.best_dense > 0) == (mode != "sparse") and (found.best_sparse > 0) == (mode != "dense")


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_finds_a_passage_by_what_it_says(pipeline, mode):
    top = pipeline.retrieve("When was Montgomery incorporated as a merger of two towns?", k=3, mode=mode).passages[0]
    assert top.passage_id == "1002:2001:1:1" and top.section == "History"


def test_dense_scores_are_the_cosines_of_question_and_passage(pipeline):
    found = pipeline.retrieve("Who developed the theory of relativity?", k=2, mode="dense", with_facts=False)
    top = found.passages[0]
    assert top.title == "Albert Einstein" and "relativity" in top.text
    embedder = pipeline.kb.embedder
    cosine = float(embedder.encode_query("Who developed the theory of relativity?")
                   @ embedder.encode_documents([document_text(top.title, top.section, top.text)])[0])
    assert top.score == pytest.approx(cosine, abs=1e-5) and found.best_dense == pytest.approx(cosine, abs=1e-5)
    assert found.entities == [] and found.facts == []  # without facts, nothing is linked


def test_facts_are_ranked_and_entities_reported_with_provenance(pipeline):
    found = pipeline.retrieve("What is the capital of Alabama?", k=3, mode="hybrid")
    assert [(e.entity_id, e.title, e.mention) for e in found.entities] == [(303, "Alabama", "Alabama")]
    assert found.entities[0].url == "https://en.wikipedia.org/wiki/Alabama"
    first = found.facts[0]
    assert (first.subject, first.predicate, first.object, first.object_is_entity) == (
        "Alabama", "capital", "Montgomery, Alabama", True)
    assert (first.page_id, first.rev_id, first.field) == (303, 1001, "capital")
    assert {f.predicate for f in found.facts} == {"capital", "largest_city", "admittance_date"}
    scores = [f.score for f in found.facts]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[1]


def test_graph_mode_ranks_first_the_subjects_passage_stating_the_asked_fact(pipeline):
    found = pipeline.retrieve("What is the capital of Alabama?", k=3, mode="graph")
    top = found.passages[0]
    assert (top.passage_id, top.section) == ("303:1001:1:1", "Geography") and "Montgomery" in top.text
    assert found.rankings.facts(GRAPH_FUSION.fact_match) == [top.passage_id]  # the fact ranking names it too
    assert found.rankings.dense[0] == found.rankings.sparse[0] == top.passage_id  # agreed first: it keeps its place


def test_a_redirect_links_its_target_and_brings_its_facts(pipeline):
    found = pipeline.retrieve("What is the birth place of Eric Blair?", k=3, mode="graph")
    assert [(e.title, e.alias, e.mention) for e in found.entities] == [("George Orwell", "Eric Blair", "Eric Blair")]
    assert (found.facts[0].predicate, found.facts[0].object) == ("birth_place", "Motihari, Bengal, British India")
    # dense and sparse both rank the lead first, so it keeps the first place; the passage stating the fact is next
    assert found.rankings.dense[0] == found.rankings.sparse[0] == found.passages[0].passage_id == "11891:4001:0:0"
    assert found.passages[1].passage_id == "11891:4001:1:1" and "Motihari" in found.passages[1].text


def test_graph_mode_reaches_the_linked_entitys_neighbours(pipeline):
    found = pipeline.retrieve("Tell me about Animal Farm", k=10, mode="graph")
    by_graph = {pid.split(":")[0] for pid in found.rankings.graph}
    assert by_graph == {"620", "11891"}  # Animal Farm, and George Orwell one link away; nothing else is


def _ranked(found):
    return [(hit.passage_id, hit.score) for hit in found.passages]


@pytest.mark.parametrize("question", ["Who developed the theory of relativity?",
                                      "Which physicist received a prize for the photoelectric effect?"])
def test_with_no_linked_entity_graph_mode_is_exactly_hybrid(pipeline, question):
    graph = pipeline.retrieve(question, k=10, mode="graph")
    assert graph.entities == [] and graph.rankings.graph == [] and graph.rankings.fact_passages == []
    assert _ranked(graph) == _ranked(pipeline.retrieve(question, k=10, mode="hybrid"))
    assert all(set(hit.sources) <= {"dense", "sparse"} for hit in graph.passages)


def test_with_a_linked_entity_but_no_relation_asked_the_fact_ranking_stays_out(pipeline):
    found = pipeline.retrieve("Tell me about Animal Farm", k=10, mode="graph")
    assert [e.title for e in found.entities] == ["Animal Farm"] and found.facts  # its facts are there...
    assert found.rankings.fact_passages == []  # ...but none is asked for, so none of their passages enters
    assert not any("facts" in hit.sources for hit in found.passages)
    # the PPR ranking is there, but it orders Animal Farm's passages as dense does: it tells nothing, so it is left out
    assert found.rankings.graph and not any("graph" in hit.sources for hit in found.passages)
    assert _ranked(found) == _ranked(pipeline.retrieve("Tell me about Animal Farm", k=10, mode="hybrid"))


def test_a_fact_below_the_relation_gate_stays_out_of_the_fact_ranking():
    a, b = "7:1:0:0", "7:1:0:1"  # two passages of one article
    rankings = Rankings(dense=[a, b], sparse=[b, a], fact_passages=[(1.0, [b]), (0.25, [a, b])])
    assert rankings.facts(0.5) == [b] and rankings.facts(0.2) == [b, a]
    strict = GraphFusion(graph_weight=0.0, facts_weight=1.0, fact_match=0.5, depth=10)
    assert [pid for pid, _, _ in fuse_graph(rankings, strict)] == [b, a]
    unboosted = GraphFusion(graph_weight=0.0, facts_weight=0.0, fact_match=0.5, depth=10)
    assert [pid for pid, _, _ in fuse_graph(rankings, unboosted)] == [a, b]  # hybrid: a first seen


def test_boosts_choose_passages_within_the_places_hybrid_gives_each_article():
    first, second, other = "7:1:0:0", "7:1:0:1", "9:1:0:0"
    rankings = Rankings(dense=[first, other, second], sparse=[other, first, second], fact_passages=[(1.0, [second])],
                        graph=[other, second])
    fused = [pid for pid, _, _ in fuse_graph(rankings, GraphFusion(1.0, 1.0, 0.5, 10))]
    assert fused == [second, other, first]  # article 7 keeps places 1 and 3, article 9 place 2


def test_a_question_naming_two_entities_gets_each_ones_best_passages_at_the_head(pipeline):
    question = "Was Montgomery or Alabama founded in 1819 first?"
    hybrid = [hit.passage_id for hit in pipeline.retrieve(question, k=2, mode="hybrid").passages]
    assert [pid.split(":")[0] for pid in hybrid] == ["1002", "1002"]  # Montgomery's passages fill hybrid's top 2
    both = RetrievalPipeline(pipeline.kb, named=NamedEntities(quota=1))
    found = both.retrieve(question, k=2, mode="graph")
    assert found.rankings.named == ["1002", "303"]
    assert [hit.passage_id for hit in found.passages] == ["1002:2001:1:1", "303:1001:2:2"]  # Alabama's 1819 passage
    off = RetrievalPipeline(pipeline.kb, named=NamedEntities(quota=0))
    assert [hit.passage_id for hit in off.retrieve(question, k=2, mode="graph").passages] == hybrid


def test_only_entities_named_by_a_proper_name_count_for_the_entity_quota(pipeline):
    def entity(title, mention):
        return LinkedEntity(entity_id=0, title=title, mention=mention, alias=mention, url="")

    named, intros = pipeline._named_articles([entity("Alabama", "Alabama"), entity("Montgomery, Alabama", "montgomery"),
                                              entity("George Orwell", "Orwell"), entity("Nowhere", "Nowhere")])
    assert named == ["303", "11891"]  # a lower-case mention is a topic; an entity without passages has no article
    assert intros == ["303:1001:0:0", "11891:4001:0:0"]  # and each one's first passage


def test_a_surname_alone_names_an_entity_for_the_quota(pipeline):
    question = "Who was born first, Orwell or Einstein?"  # "Einstein" is a redirect; "Orwell" no alias at all
    found = RetrievalPipeline(pipeline.kb, named=NamedEntities(quota=1, surnames=True)).retrieve(question, mode="graph")
    assert [e.title for e in found.entities] == ["Albert Einstein"]  # what the linker links, for the answer
    assert found.rankings.named == ["736", "11891"]  # and George Orwell, whose article retrieval ranks
    off = RetrievalPipeline(pipeline.kb, named=NamedEntities(quota=1)).retrieve(question, mode="graph")
    assert off.rankings.named == ["736"]


def test_each_named_entitys_first_passage_is_kept_among_its_best():
    a0, a1, a2, a3, b0, b1 = "7:1:0:0", "7:1:1:1", "7:1:1:2", "7:1:1:3", "9:1:0:0", "9:1:1:1"
    rankings = Rankings(dense=[a1, a2, b1, a3, a0, b0], sparse=[a1, a2, b1, a3, a0, b0], named=["7", "9"],
                        intros=[a0, b0])
    unboosted = GraphFusion(0.0, 0.0, 0.5, 5)
    assert [pid for pid, _, _ in fuse_graph(rankings, unboosted, named=NamedEntities(quota=2))] == [a1, a2, b1, b0, a3, a0]
    intro = NamedEntities(quota=2, intro=2)
    assert [pid for pid, _, _ in fuse_graph(rankings, unboosted, named=intro)] == [a1, a0, b1, b0, a2, a3]
    first = NamedEntities(quota=2, lead=1, intro=1)
    assert [pid for pid, _, _ in fuse_graph(rankings, unboosted, named=first)] == [a0, b0, a1, b1, a2, a3]


def test_the_entity_quota_fires_only_when_two_or_more_entities_are_linked():
    a1, a2, a3, b1, c1 = "7:1:0:0", "7:1:0:1", "7:1:0:2", "9:1:0:0", "5:1:0:0"
    rankings = Rankings(dense=[a1, a2, c1, a3, b1], sparse=[a1, a2, c1, a3, b1])
    unboosted = GraphFusion(0.0, 0.0, 0.5, 5)
    for linked in ([], ["7"], ["7", "7"]):
        rankings.named = linked
        assert fuse_graph(rankings, unboosted, named=NamedEntities(quota=2)) == fuse_hybrid(rankings)
    rankings.named = ["7", "9"]
    assert [pid for pid, _, _ in fuse_graph(rankings, unboosted, named=NamedEntities(quota=2))] == [a1, a2, b1, c1, a3]
    led = NamedEntities(quota=2, lead=1)
    assert [pid for pid, _, _ in fuse_graph(rankings, unboosted, named=led)] == [a1, b1, a2, c1, a3]  # each one's best first
    assert fuse_graph(rankings, unboosted, named=NamedEntities()) == fuse_hybrid(rankings)  # off


@pytest.mark.parametrize("bad", [dict(quota=-1), dict(quota=5, lead=-1), dict(quota=5, intro=-1)])
def test_a_negative_entity_quota_lead_or_intro_is_refused(bad):
    with pytest.raises(ValueError, match="quota, lead and intro"):
        NamedEntities(**bad)


@pytest.mark.parametrize("question", ["What is the capital of Alabama?", "Tell me about Animal Farm"])
def test_graph_mode_only_reorders_hybrids_top_passages(pipeline, question):
    hybrid = [hit.passage_id for hit in pipeline.retrieve(question, k=50, mode="hybrid").passages]
    for depth in (1, 2, 3):
        bounded = RetrievalPipeline(pipeline.kb, fusion=GraphFusion(1.0, 1.0, 0.01, depth))
        graph = [hit.passage_id for hit in bounded.retrieve(question, k=50, mode="graph").passages]
        assert set(graph[:depth]) == set(hybrid[:depth]) and set(graph) == set(hybrid)


def test_plain_rrf_is_textbook_rrf_of_the_two_lists():
    rankings = Rankings(dense=["a", "b", "c"], sparse=["c", "d", "a"])
    assert fuse_hybrid(rankings, PLAIN_RRF) == reciprocal_rank_fusion({"dense": ["a", "b", "c"], "sparse": ["c", "d", "a"]},
                                                                      k=60)
    assert (PLAIN_RRF.k, PLAIN_RRF.dense_weight, PLAIN_RRF.sparse_weight, PLAIN_RRF.depth) == (60, 1.0, 1.0, None)


def test_a_hybrid_setting_weighs_cuts_and_damps_the_lists():
    rankings = Rankings(dense=["a", "b", "c"], sparse=["c", "d", "a"])
    assert [pid for pid, _, _ in fuse_hybrid(rankings, PLAIN_RRF)][:2] == ["a", "c"]
    assert [pid for pid, _, _ in fuse_hybrid(rankings, HybridFusion(sparse_weight=2.0))][0] == "c"
    shallow = fuse_hybrid(rankings, HybridFusion(depth=2))
    assert {pid for pid, _, _ in shallow} == {"a", "b", "c", "d"} and dict((p, s) for p, _, s in shallow)["a"] == ["dense"]


@pytest.mark.parametrize("bad", [dict(k=0), dict(dense_weight=-1.0), dict(dense_weight=0.0, sparse_weight=0.0),
                                 dict(depth=0)])
def test_a_hybrid_setting_out_of_range_is_refused(bad):
    with pytest.raises(ValueError):
        HybridFusion(**bad)


@pytest.mark.parametrize("hybrid", [PLAIN_RRF, HybridFusion(k=10, sparse_weight=1.5, depth=2)])
@pytest.mark.parametrize("question", ["What is the capital of Alabama?", "Who wrote Animal Farm?"])
def test_hybrid_mode_fuses_with_its_setting_and_graph_mode_keeps_its_article_order(pipeline, hybrid, question):
    tuned = RetrievalPipeline(pipeline.kb, hybrid=hybrid)
    found = tuned.retrieve(question, k=50, mode="hybrid")
    expected = [pid for pid, _, _ in fuse_hybrid(found.rankings, hybrid)][:50]
    assert [hit.passage_id for hit in found.passages] == expected
    graph = tuned.retrieve(question, k=50, mode="graph").passages
    # a bridge's passages (retrieval.chain) join after hybrid's first places; hybrid's keep their article order
    assert [hit.page_id for hit in graph if hit.sources != ["bridge"]] == [hit.page_id for hit in found.passages]
    place = min(tuned.bridges.place, len(found.passages))  # a shorter list gets them at its end
    assert all(at >= place for at, hit in enumerate(graph) if hit.sources == ["bridge"])


def test_the_service_fuses_hybrid_with_the_recorded_setting(pipeline):
    assert pipeline.hybrid == HYBRID_FUSION


def test_a_question_the_knowledge_base_cannot_match_finds_nothing_by_words(pipeline):
    found = pipeline.retrieve("Quantum chromodynamics xylophones?", k=3, mode="sparse")
    assert found.passages == [] and found.best_sparse == 0.0 and found.entities == []


def test_an_unknown_mode_is_refused(pipeline):
    with pytest.raises(ValueError, match="mode must be one of"):
        pipeline.retrieve("Alabama", mode="telepathy")


# -- the real sample knowledge base ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(sample_kb):
    engine = QAEngine(sample_kb)
    engine.retrieve("warm up", k=1)  # loads retrieval only, never the LM
    return engine


@pytest.mark.slow
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


@pytest.mark.slow
def test_capital_of_alabama_ranks_the_capital_fact_first(engine):
    entities = engine._pipeline.link("What is the capital of Alabama?")
    assert [e.title for e in entities] == ["Alabama"]
    with engine._kb.session() as session:
        ranked = rank_facts("What is the capital of Alabama?", load_facts(session, entities, lambda t: t))
    assert (ranked[0].subject, ranked[0].predicate, ranked[0].object) == ("Alabama", "capital", "Montgomery, Alabama")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid", "graph"])
def test_every_mode_finds_the_article_of_a_named_entity(engine, mode):
    hits = engine.retrieve("Who wrote Animal Farm?", k=5, mode=mode)
    assert 0 < len(hits) <= 5
    assert hits[0].title == "Animal Farm"
    assert all(h.url.startswith("https://en.wikipedia.org/wiki/") for h in hits)
    if mode == "graph":  # graph mode ranks articles exactly as hybrid does
        assert [h.title for h in hits] == [h.title for h in engine.retrieve("Who wrote Animal Farm?", k=5, mode="hybrid")]


@pytest.mark.slow
def test_bad_questions_and_modes_are_refused(engine):
    with pytest.raises(InvalidQuestion):
        engine.retrieve("   ")
    with pytest.raises(InvalidQuestion):
        engine.retrieve("x" * (engine.settings.max_question_chars + 1))
    with pytest.raises(ValueError):
        engine.retrieve("Alabama", mode="telepathy")


@pytest.mark.slow
def test_missing_knowledge_base_says_to_ingest(tmp_settings):
    with pytest.raises(KnowledgeBaseMissing, match="kgqa ingest"):
        QAEngine(tmp_settings).retrieve("What is the capital of Alabama?")
    assert not (tmp_settings.data_dir / "kgqa.db").exists()


@pytest.mark.slow
def test_graph_mode_ranks_first_the_passage_stating_the_asked_fact(engine):
    hits = engine.retrieve("What is the capital of Alabama?", k=5, mode="graph")
    assert hits[0].title == "Alabama" and "Montgomery" in hits[0].text
    assert "facts" in hits[0].sources


def test_graph_mode_is_hybrid_where_its_boosts_carry_no_information():
    """On random rankings: PPR ranks whole entities, so within an article it orders passages as dense does; with
    only that, or no fact above the gate, graph mode is hybrid; and the passage both rankers put first stays first."""
    rng = random.Random(29)
    for _ in range(300):
        articles = rng.sample(range(100, 120), rng.randint(1, 4))
        passages = [f"{a}:1:0:{n}" for a in articles for n in range(rng.randint(1, 4))]
        dense = rng.sample(passages, len(passages))
        sparse = rng.sample(passages, rng.randint(1, len(passages)))
        rng.shuffle(articles)  # PPR's entity order is its own; each entity's passages follow their cosine
        graph = [pid for a in articles for pid in dense if pid.startswith(f"{a}:")]
        rankings = Rankings(dense=dense, sparse=sparse, graph=graph,
                            fact_passages=[(0.25, rng.sample(passages, rng.randint(1, len(passages))))])
        hybrid = fuse_hybrid(rankings)
        for fusion in (GRAPH_FUSION, GraphFusion(5.0, 5.0, 0.5, 10), GraphFusion(1.0, 1.0, 0.5, 2)):
            assert fuse_graph(rankings, fusion) == hybrid  # the PPR ranking repeats dense; the fact is below the gate
        rankings.fact_passages = [(1.0, rng.sample(passages, rng.randint(1, len(passages))))]
        graph_mode = fuse_graph(rankings, GraphFusion(5.0, 5.0, 0.5, 10))
        assert [pid.split(":")[0] for pid, _, _ in graph_mode] == [pid.split(":")[0] for pid, _, _ in hybrid]
        if dense[0] == sparse[0]:
            assert graph_mode[0] == hybrid[0]
