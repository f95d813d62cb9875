"""The retrieval pipeline: link entities, run dense and sparse search, expand over the graph, fuse, fetch.

Modes, for evaluation and ablation: ``dense``, ``sparse``, ``hybrid`` (RRF of
both, ``fuse_hybrid``: plain RRF unless a held-out measurement chose otherwise,
retrieval/tuning.py) and ``graph`` (the default for answering): hybrid reordered by two gated
boosts, Personalized PageRank over the linked entities' neighbourhood and the
passages stating the facts asked for, with each named entity's best passages at the head
and a bridge's passages brought in for a second hop (retrieval/chain.py; see
retrieval/tuning.py for the gates and the settings chosen on the dev splits).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from kgqa.records import FactHit, LinkedEntity, PassageHit
from kgqa.text import content_words
from retrieval.facts import load_facts, predicate_match, rank_facts
from retrieval.word_vectors import WordVectors
from kg.passages import article_of
from retrieval.fusion import boosted_fusion, interleave_groups, keep_within, reciprocal_rank_fusion
from retrieval.chain import Bridge, FirstHop, find_bridges
from retrieval.linking import by_surname, surname_words
from retrieval.tuning import (BRIDGES, GRAPH_FUSION, HYBRID_FUSION, NAMED_ENTITIES, BridgeFollowing, GraphFusion,
                              HybridFusion, NamedEntities)

Mode = Literal["dense", "sparse", "hybrid", "graph"]
MODES = ("dense", "sparse", "hybrid", "graph")
POOL = 100  # candidates each ranker contributes to fusion (and the dense pool graph ranking reads)
GRAPH_ENTITIES = 8  # PPR entities whose passages join the graph ranking
PASSAGES_PER_ENTITY = 40
FACTS_KEPT = 10  # ranked facts a retrieval keeps: the prompt takes the first few (qa/tuning.py MAX_FACTS)
FACTS_FOR_PASSAGES = 3  # the best-ranked facts whose passages may join the fact ranking
SURNAME_POOL = 30  # passages of each ranking whose articles a lone surname may name


@dataclass
class Retrieval:
    """What retrieval found for one question, and the signals abstention reads."""

    passages: list[PassageHit]
    facts: list[FactHit] = field(default_factory=list)
    entities: list[LinkedEntity] = field(default_factory=list)
    link_s: float = 0.0
    retrieve_s: float = 0.0
    best_dense: float = 0.0  # top cosine of the question with any passage
    best_sparse: float = 0.0  # top BM25 score
    rankings: Rankings | None = None  # what was fused (dense and sparse modes: None)


@dataclass
class Rankings:
    """The rankings graph mode fuses for one question (passage ids, best first), kept apart so fusion can be tuned."""

    dense: list[str]
    sparse: list[str]
    graph: list[str] = field(default_factory=list)  # empty when no entity is linked
    # (relation match in (0, 1], passages of the subject stating the fact) per asked-for fact, best fact first
    fact_passages: list[tuple[float, list[str]]] = field(default_factory=list)
    # the articles (``article_of``) of the entities the question names by a proper name, in the order linked
    named: list[str] = field(default_factory=list)
    # the first passage (the introduction) of each of those articles
    intros: list[str] = field(default_factory=list)

    def facts(self, least_match: float) -> list[str]:
        """The fact ranking: passages of the facts whose relation matches the question at least ``least_match``."""
        ranking: list[str] = []
        for match, passages in self.fact_passages:
            if match >= least_match:
                ranking += [pid for pid in passages if pid not in ranking]
        return ranking


def _hybrid_base(rankings: Rankings, hybrid: HybridFusion) -> dict[str, list[str]]:
    depth = hybrid.depth
    return {"dense": rankings.dense[:depth], "sparse": rankings.sparse[:depth]}


def fuse_hybrid(rankings: Rankings, hybrid: HybridFusion = HYBRID_FUSION) -> list[tuple[str, float, list[str]]]:
    """Hybrid mode's fusion: weighted RRF of the dense and the sparse ranking (each cut at ``hybrid.depth``)."""
    return reciprocal_rank_fusion(_hybrid_base(rankings, hybrid), weights=hybrid.weights, k=hybrid.k)


def fuse_graph(rankings: Rankings, fusion: GraphFusion = GRAPH_FUSION, hybrid: HybridFusion = HYBRID_FUSION,
               named: NamedEntities = NAMED_ENTITIES) -> list[tuple[str, float, list[str]]]:
    """Graph mode's fusion: ``fuse_hybrid``'s order, reordered within its top ``fusion.depth`` by the gated boosts.

    Each of those places keeps the article hybrid put there; the boosts choose which of that
    article's passages fills it. So graph mode ranks articles exactly as hybrid does, whatever
    the knowledge base, and can only bring the passage that states the answer up. The one
    exception here: a question that names two or more entities (``rankings.named``, "Who was born
    first, Albert Einstein or Aldous Huxley?") gets each one's ``named.quota`` best
    passages at the head, so one article cannot fill the list (``interleave_groups``), its first
    passage among its best ``named.intro`` (``keep_within``). (``RetrievalPipeline`` then follows
    a bridge for a question naming fewer.) Where the
    boosts tell nothing new, graph mode is hybrid, by construction:

    - no linked entity or no fact asked: no boost;
    - a boost that holds all of an article's passages in hybrid's top places in the order dense
      or sparse gives them is left out for that article (``boosted_fusion``). The PPR ranking is
      such a boost: every passage of an entity shares its PPR, so within an article it is
      ordered by the passage's cosine, dense's own order;
    - the passage dense and sparse both rank first keeps the first place (``agreed_first``).
    """
    base = _hybrid_base(rankings, hybrid)
    fused = boosted_fusion(
        base,
        {"graph": rankings.graph, "facts": rankings.facts(fusion.fact_match)},
        weights={**hybrid.weights, "graph": fusion.graph_weight, "facts": fusion.facts_weight},
        depth=fusion.depth,
        k=hybrid.k,
        group=article_of,
        keep=agreed_first(base, hybrid.weights),
    )
    if len(set(rankings.named)) >= 2:  # a question naming two or more entities reads each one's article
        if named.intro:  # where an article states its thing's dates, area and population
            fused = keep_within(fused, rankings.intros, quota=min(named.intro, named.quota), group=article_of)
        fused = interleave_groups(fused, rankings.named, quota=named.quota, group=article_of)
        # then each one's best ``named.lead`` first, so the top 5 holds both articles' best passages too
        fused = interleave_groups(fused, rankings.named, quota=min(named.lead, named.quota), group=article_of)
    return fused


def agreed_first(base: dict[str, list[str]], weights: dict[str, float]) -> set[str]:
    """The passage every weighed base ranking puts first, when there are two or more and they agree; else none.

    On the sample's dev split a boost moved such a passage down on 9 questions: 7 evidence recall@1
    losses, 2 gains (every other move: 6 gains, no loss). Two rankers that agree outvote a boost.
    """
    firsts = {ranking[0] for name, ranking in base.items() if weights.get(name, 1.0) > 0 and ranking}
    weighed = sum(1 for name, ranking in base.items() if weights.get(name, 1.0) > 0 and ranking)
    return firsts if weighed >= 2 and len(firsts) == 1 else set()


class RetrievalPipeline:
    """Composes the loaded knowledge base's components; stateless per call, so thread-safe."""

    def __init__(self, kb, *, pool: int = POOL, fusion: GraphFusion = GRAPH_FUSION,
                 hybrid: HybridFusion = HYBRID_FUSION, named: NamedEntities = NAMED_ENTITIES,
                 bridges: BridgeFollowing = BRIDGES):
        self.kb = kb
        self.hybrid = hybrid
        self.named = named
        self.bridges = bridges
        # relation words matched by meaning (facts.py); encodes only when a fact is ranked
        self.vectors = WordVectors(lambda texts: kb.embedder.encode_documents(texts))
        self.pool = pool
        self.fusion = fusion

    def link(self, question: str) -> list[LinkedEntity]:
        return self.kb.linker.link(question)

    def facts_for(self, text: str, entities: Sequence[LinkedEntity], *,
                  limit: int | None = FACTS_KEPT) -> list[FactHit]:
        """The infobox facts of ``entities`` ranked against ``text``, best first: the question's, or the relation
        a comparison reads on each side ("born" for "Who is younger, X or Y?")."""
        with self.kb.session() as session:
            return rank_facts(text, load_facts(session, entities, _url), limit=limit, vectors=self.vectors)

    def retrieve(self, question: str, *, k: int = 10, mode: Mode = "graph", with_facts: bool = True) -> Retrieval:
        from retrieval.dense import DenseRetriever

        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        started = time.perf_counter()
        entities = self.link(question) if mode == "graph" or with_facts else []
        linked_at = time.perf_counter()
        dense = DenseRetriever(self.kb.embedder, self.kb.vector_index)
        catalog = self.kb.catalog
        query_vector = dense.encode(question) if mode != "sparse" else None
        dense_hits = dense.search(query_vector, self.pool) if query_vector is not None else []
        dense_ranking = [catalog.by_vector[v].passage_id for v, _ in dense_hits if v in catalog.by_vector]
        sparse_hits = self.kb.sparse.search(question, self.pool) if mode != "dense" else []
        rankings = Rankings(dense=dense_ranking, sparse=[key for key, _ in sparse_hits])
        facts: list[FactHit] = []
        if entities and (with_facts or mode == "graph"):  # graph mode ranks passages by the facts asked for
            facts = self.facts_for(question, entities)
        if mode == "graph":  # with no linked entity both boosts are empty and graph mode is hybrid
            rankings.graph = self._graph_ranking(entities, dict(dense_hits))
            rankings.fact_passages = self._fact_passages(question, facts)
            named = self._surnames(question, entities, rankings) if self.named.surnames else []
            rankings.named, rankings.intros = self._named_articles(entities + named)
        if mode == "dense":
            fused = [(catalog.by_vector[v].passage_id, s, ["dense"]) for v, s in dense_hits if v in catalog.by_vector]
        elif mode == "sparse":
            fused = [(key, s, ["sparse"]) for key, s in sparse_hits]
        elif mode == "hybrid":
            fused = fuse_hybrid(rankings, self.hybrid)
        else:
            fused = fuse_graph(rankings, self.fusion, self.hybrid, self.named)
            if len(set(rankings.named)) < 2:  # a question naming two things compares them: no bridge to find
                fused = self._follow_bridges(question, fused, entities, dense)
        passages = self._fetch(fused[:k])
        finished = time.perf_counter()
        return Retrieval(
            passages=passages, facts=facts, entities=entities, rankings=rankings if mode in ("hybrid", "graph") else None,
            link_s=linked_at - started, retrieve_s=finished - linked_at,
            best_dense=max((s for _, s in dense_hits), default=0.0),
            best_sparse=max((s for _, s in sparse_hits), default=0.0),
        )

    def _graph_ranking(self, entities, dense_scores: dict[int, float]) -> list[str]:
        """Passages of the entities PPR ranks high, ordered by entity score times passage relevance.

        Relevance is the passage's cosine when it is in the dense pool, else 0 (reading order breaks ties),
        which costs nothing more than the dense search already done. Each entity brings its
        ``PASSAGES_PER_ENTITY`` most relevant passages: cutting at its first ones instead left a long
        article's later passages out, and the boost then pushed them down for where they stand, not
        for anything the graph knows.
        """
        if not entities:
            return []
        catalog = self.kb.catalog
        ranked_entities = self.kb.expander.expand([e.title for e in entities], top=GRAPH_ENTITIES)
        if not ranked_entities:  # linked entities outside the link graph still count as seeds
            ranked_entities = [(e.title, 1.0) for e in entities]
        top_score = ranked_entities[0][1] or 1.0
        scored = []
        for title, ppr in ranked_entities:
            weight = ppr / top_score
            own = sorted(((weight * (0.5 + 0.5 * max(dense_scores.get(ref.vector_id, 0.0), 0.0)) - 1e-4 * ref.ordinal,
                           ref.passage_id) for ref in catalog.of_title(title)), key=lambda item: -item[0])
            scored += own[:PASSAGES_PER_ENTITY]  # an entity's most relevant passages, not its first ones
        scored.sort(key=lambda item: -item[0])
        return [pid for _, pid in scored[: self.pool]]

    def _follow_bridges(self, question: str, fused: list, entities, dense) -> list:
        """``fused`` with the second hop's passages after its first ``bridges.place`` (retrieval.chain).

        Each bridge's passages are ranked by the second query: RRF of their cosine (those in the dense
        pool of that query) and their BM25 score (every passage of the bridge's article).
        """
        settings = self.bridges
        if not settings.first_hops or not settings.bridges or not settings.passages or not fused:
            return fused
        place = min(settings.place, len(fused))
        head = self._first_hops([pid for pid, _, _ in fused[: max(settings.first_hops, place)]])
        read = {word for hop in head[:place] for word in content_words(f"{hop.title} {hop.text}")}
        found = find_bridges(question, head[: settings.first_hops], self.kb.expander.linked_titles,
                             named=[e.title for e in entities], read=read, least_shared=settings.least_shared,
                             limit=settings.bridges)
        ahead = {pid for pid, _, _ in fused[:place]}  # already read before the bridge's place: left there
        brought: list[str] = []
        for bridge in found:
            brought += [pid for pid in self._second_hop(bridge, dense)[: settings.passages]
                        if pid not in brought and pid not in ahead]
        if not brought:
            return fused
        after = [entry for entry in fused[place:] if entry[0] not in brought]
        score = fused[place - 1][1] if place else fused[0][1]
        return fused[:place] + [(pid, score, ["bridge"]) for pid in brought] + after

    def _first_hops(self, ids: list[str]) -> list[FirstHop]:
        from sqlalchemy import select

        from kg.store import Passage

        with self.kb.session() as session:
            rows = {row.id: row for row in session.scalars(select(Passage).where(Passage.id.in_(ids)))}
        return [FirstHop(pid, rows[pid].title, rows[pid].text) for pid in ids if pid in rows]

    def _second_hop(self, bridge: Bridge, dense) -> list[str]:
        """The bridge article's passages, best first for the bridge's query (only those either ranker scores)."""
        catalog = self.kb.catalog
        positions = catalog.positions_of_title(bridge.title)
        if not positions:
            return []
        refs = [catalog.ref(at) for at in positions]
        sparse = sorted(((s, ref.passage_id) for s, ref in zip(self.kb.sparse.scores_at(bridge.query, positions), refs)
                         if s > 0), key=lambda item: -item[0])
        own = {ref.vector_id: ref.passage_id for ref in refs}
        dense_ranking = [own[v] for v, _ in dense.search(dense.encode(bridge.query), self.pool) if v in own]
        fused = reciprocal_rank_fusion({"dense": dense_ranking, "sparse": [pid for _, pid in sparse]},
                                       weights={"dense": 1.0, "sparse": self.bridges.sparse_weight}, k=self.hybrid.k)
        return [pid for pid, _, _ in fused]

    def _surnames(self, question: str, entities, rankings: Rankings) -> list[LinkedEntity]:
        """Entities the question names by a surname alone, among the articles of the best ``SURNAME_POOL``
        passages of the dense and the sparse ranking (``retrieval.linking.by_surname``)."""
        from sqlalchemy import select

        from kg.store import Entity

        mentions = [e.mention for e in entities]
        if not surname_words(question, mentions):
            return []
        pages = {int(article_of(pid)) for pid in rankings.dense[:SURNAME_POOL] + rankings.sparse[:SURNAME_POOL]}
        if not pages:
            return []
        with self.kb.session() as session:
            ids = dict(session.execute(select(Entity.title, Entity.entity_id).where(Entity.entity_id.in_(pages))).all())
        return [LinkedEntity(entity_id=ids[title], title=title, mention=mention, alias=mention, url=_url(title))
                for mention, title in by_surname(question, mentions, ids)]

    def _named_articles(self, entities) -> tuple[list[str], list[str]]:
        """The article (``article_of`` its passages) of each entity linked through a proper name, in link order,
        and each one's first passage.

        A mention that starts with a capital letter names the entity ("Alabama or Alaska"); a common noun
        linked to its article ("Which animals share a family with the aardwolf?") is a topic, not a second
        thing the question compares, and does not count.
        """
        articles: list[str] = []
        intros: list[str] = []
        for entity in entities:
            if not entity.mention[:1].isupper():
                continue
            refs = self.kb.catalog.of_title(entity.title)
            if refs and (article := article_of(refs[0].passage_id)) not in articles:
                articles.append(article)
                intros.append(refs[0].passage_id)
        return articles, intros

    def _fact_passages(self, question: str, facts: list[FactHit]) -> list[tuple[float, list[str]]]:
        """Passages that state the facts the question asks for: the subject's passages naming the object.

        The graph knows "Alabama -capital-> Montgomery, Alabama"; the passage of Alabama that
        mentions Montgomery is the one a reader can check that fact in. Only facts whose
        relation the question asks for (``predicate_match`` > 0) are looked up; each comes
        with that match, which the fusion gate reads.
        """
        from sqlalchemy import func, select

        from kg.store import Passage

        asked = [(match, f) for f in facts[:FACTS_FOR_PASSAGES] if (match := predicate_match(question, f.predicate, self.vectors)) > 0]
        found: list[tuple[float, list[str]]] = []
        if not asked:
            return found
        with self.kb.session() as session:
            for match, fact in asked:
                subject_words = set(content_words(fact.subject))
                wanted = set(content_words(fact.object)) - subject_words or set(content_words(fact.object))
                if not wanted:
                    continue
                rarest = max(wanted, key=len)  # a substring filter first, so few rows are read back
                rows = session.scalars(
                    select(Passage)
                    .where(Passage.page_id == fact.page_id, func.lower(Passage.text).contains(rarest))
                    .order_by(Passage.ordinal)
                )
                found.append((match, [row.id for row in rows if wanted <= set(content_words(row.text))]))
        return found

    def _fetch(self, fused) -> list[PassageHit]:
        from sqlalchemy import select

        from kg.store import Passage

        if not fused:
            return []
        ids = [pid for pid, _, _ in fused]
        with self.kb.session() as session:
            rows = {p.id: p for p in session.scalars(select(Passage).where(Passage.id.in_(ids)))}
        hits = []
        for pid, score, sources in fused:
            row = rows.get(pid)
            if row is None:  # removed since the catalog was loaded
                continue
            hits.append(
                PassageHit(
                    passage_id=row.id, page_id=row.page_id, title=row.title, section=row.section or "",
                    text=row.text, url=_url(row.title), score=round(float(score), 6), sources=list(sources),
                )
            )
        return hits


def _url(title: str) -> str:
    from kg.store import wikipedia_url

    return wikipedia_url(title)
