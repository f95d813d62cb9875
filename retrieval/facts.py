"""Facts: fetch the linked entities' infobox triples and rank them against the question.

A fact ranks high when its predicate is what the question asks about: each word of
the predicate is matched to the question's words by meaning, with the embedder's word
vectors (``capital`` ~ capital, ``author`` ~ wrote 0.66), not through a table of cue
words, so a question phrased outside any vocabulary still finds its fact. The kind of
answer the question asks for adds a prior read off the object's form (a year for
"when", a number for "how many", an entity for "who" and "where").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from kgqa.questions import asked_kind
from kgqa.records import FactHit, LinkedEntity
from kgqa.text import content_words, fold
from retrieval.word_vectors import WordVectors

# A predicate word is asked for when a question word is this close in meaning: the relation match
# the claim checks were calibrated with on the dev split (qa/tuning.py RELATION_MATCH).
PREDICATE_MATCH = 0.55
# Fact rows read per question: far more than the sample's largest infobox neighbourhood (84 own triples,
# 3 pointing at it), and a bound on what a popular entity of a full dump costs a question.
FACT_ROWS = 2000
_YEAR = re.compile(r"(?<![\d,.])\d{3,4}(?!\d|[,.]\d)")  # "1819", not the "024" of "5,024,279"
_PRED_SPLIT = re.compile(r"[_\W\d]+|(?<=[a-z])(?=[A-Z])")


def predicate_words(predicate: str) -> list[str]:
    return [fold(p) for p in _PRED_SPLIT.split(predicate) if p]


def predicate_match(question: str, predicate: str, vectors: WordVectors | None = None) -> float:
    """How directly the question asks for this predicate, in [0, 1]: the share of its words the question
    speaks of, the same word or (with ``vectors``) one at least ``PREDICATE_MATCH`` close in meaning."""
    asked = list(dict.fromkeys(content_words(question)))
    pred = predicate_words(predicate)
    if not pred:
        return 0.0
    matched = 0
    for word in pred:
        if word in asked or (vectors is not None and vectors.best_match(word, asked)[0] >= PREDICATE_MATCH):
            matched += 1
    return matched / len(pred)


def _answer_kind_prior(question: str, obj: str, object_is_entity: bool) -> float:
    """How well the object's form fits the kind of answer the question asks for (``kgqa.questions.asked_kind``)."""
    kind = asked_kind(question).kind
    if kind == "date":
        return 1.0 if _YEAR.search(obj) else -1.0
    if kind == "number":
        return 1.0 if any(c.isdigit() for c in obj) else 0.0
    if kind in ("name", "place"):  # a where- or who-question is never answered by a date
        return 0.5 if object_is_entity else (-1.0 if _YEAR.search(obj) and not re.search(r"[A-Za-z]{3}", obj) else 0.0)
    return 0.0


def rank_facts(question: str, facts: Iterable[FactHit], *, limit: int | None = None,
               vectors: WordVectors | None = None) -> list[FactHit]:
    """``facts`` rescored against ``question``, best first; facts restating the question sink."""
    q_content = set(content_words(question))
    scored: list[FactHit] = []
    for fact in facts:
        match = predicate_match(question, fact.predicate, vectors)
        prior = _answer_kind_prior(question, fact.object, fact.object_is_entity)
        obj_words = set(content_words(fact.object))
        echo = len(obj_words & q_content) / len(obj_words) if obj_words else 1.0
        score = 2.0 * match + 0.3 * prior - 0.5 * echo - 0.002 * min(len(fact.object), 200)
        scored.append(fact.model_copy(update={"score": round(score, 4)}))
    scored.sort(key=lambda f: (-f.score, f.triple_id))
    return scored[:limit] if limit is not None else scored


def load_facts(session, entities: Sequence[LinkedEntity], url_for: Callable[[str], str],
               *, limit: int = FACT_ROWS) -> list[FactHit]:
    """Infobox triples whose subject (or entity object) is a linked entity, unscored.

    The linked entities' own triples come first; triples that merely point at them
    ("born in: United States") fill what is left of ``limit``. On a full dump a
    popular entity is the object of more triples than any question can read, and an
    unordered cut could drop the subject's own facts.
    """
    from sqlalchemy import select

    from kg.store import Entity, Triple

    if not entities:
        return []
    ids = [e.entity_id for e in entities]
    titles = [e.title for e in entities]
    query = select(Triple, Entity.title).join(Entity, Entity.entity_id == Triple.subject_id).where(Triple.kind == "infobox")
    rows = session.execute(query.where(Triple.subject_id.in_(ids)).order_by(Triple.id).limit(limit)).all()
    if len(rows) < limit:
        rows += session.execute(
            query.where(Triple.object_title.in_(titles)).where(Triple.subject_id.not_in(ids))
            .order_by(Triple.id).limit(limit - len(rows))
        ).all()
    hits = []
    for triple, subject_title in rows:
        obj = triple.object_title or triple.object_literal
        if not obj.strip():
            continue
        hits.append(
            FactHit(
                triple_id=triple.id, subject=subject_title, predicate=triple.predicate, object=obj,
                object_is_entity=bool(triple.object_title), page_id=triple.page_id, rev_id=triple.rev_id,
                field=triple.field, url=url_for(subject_title), score=0.0,
            )
        )
    return hits
