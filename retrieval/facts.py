"""Facts: fetch the linked entities' infobox triples and rank them against the question.

A fact ranks high when its predicate is what the question asks about
("capital of Alabama" -> ``capital``). Question words map to predicate words
through a small cue table (``wrote`` -> ``author``), and the question's wh-word
adds a type prior (``when`` -> dates, ``where`` -> places).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from kgqa.records import FactHit, LinkedEntity
from kgqa.text import content_words, fold, words

# Question words -> predicate words they ask for. Vocabulary, not answers.
CUES: dict[str, tuple[str, ...]] = {
    "wrote": ("author", "writer"), "write": ("author", "writer"), "written": ("author", "writer"),
    "writer": ("author",), "author": ("writer",), "penned": ("author",),
    "born": ("birth",), "birth": ("born",), "birthplace": ("birth", "place"),
    "die": ("death",), "died": ("death",), "death": ("died",),
    "founded": ("founded", "established", "founder", "formation"), "established": ("established", "founded"),
    "founder": ("founder", "founded"), "created": ("creator", "founded", "established"),
    "biggest": ("largest",), "largest": ("largest",), "populous": ("population", "largest"),
    "people": ("population",), "inhabitant": ("population",), "population": ("population",),
    "directed": ("director",), "director": ("director",), "produced": ("producer",),
    "published": ("published", "publication", "release"), "released": ("released", "release"),
    "married": ("spouse",), "wife": ("spouse",), "husband": ("spouse",), "spouse": ("spouse",),
    "nationality": ("nationality", "citizenship"), "citizen": ("citizenship", "nationality"),
    "language": ("language", "languages"), "speak": ("language", "languages"), "spoken": ("language", "languages"),
    "currency": ("currency",), "money": ("currency",),
    "leader": ("leader",), "governor": ("governor", "leader"), "president": ("president", "leader"),
    "head": ("leader", "head"), "led": ("leader",), "ruled": ("leader", "ruler", "monarch"),
    "award": ("award", "awards", "prize"), "prize": ("award", "awards", "prize"),
    "launched": ("launch",), "launch": ("launch",), "landed": ("landing",), "landing": ("landing",),
    "crew": ("crew",), "nickname": ("nickname",), "motto": ("motto",), "anthem": ("anthem",),
    "genre": ("genre",), "publisher": ("publisher",), "studied": ("alma", "education"),
    "educated": ("alma", "education"), "school": ("alma", "education"), "university": ("alma", "education"),
    "parent": ("parent", "father", "mother"), "child": ("children", "child"), "children": ("children",),
    "area": ("area",), "big": ("area", "size"), "large": ("area", "size"),
    "elevation": ("elevation",), "high": ("elevation", "height", "highest"), "tall": ("height",),
    "official": ("official",), "religion": ("religion",), "government": ("government",),
    "known": ("known",), "famous": ("known",), "located": ("location", "country", "state"),
}
WH_PRIORS: dict[str, tuple[str, ...]] = {
    "when": ("date", "year", "founded", "established", "launch", "released", "published"),
    "where": ("place", "location", "city", "country", "capital", "headquarters", "state"),
    "who": ("author", "leader", "founder", "director", "spouse", "president", "governor", "creator"),
}
_PRED_SPLIT = re.compile(r"[_\W\d]+|(?<=[a-z])(?=[A-Z])")


def predicate_words(predicate: str) -> list[str]:
    return [fold(p) for p in _PRED_SPLIT.split(predicate) if p]


def predicate_match(question: str, predicate: str) -> float:
    """How directly the question asks for this predicate, in [0, 1]: the share of its words asked for."""
    asked = set(content_words(question))
    for word in list(asked):
        asked.update(CUES.get(word, ()))
    pred = predicate_words(predicate)
    if not pred:
        return 0.0
    return sum(1 for p in pred if p in asked) / len(pred)


def _wh_prior(question: str, predicate: str, obj: str, object_is_entity: bool) -> float:
    q_words = words(question)
    pred = set(predicate_words(predicate))
    prior = 0.0
    for wh, hints in WH_PRIORS.items():
        if wh in q_words and pred & set(hints):
            prior += 1.0
    if ("when" in q_words and pred & set(WH_PRIORS["where"])) or ("where" in q_words and pred & set(WH_PRIORS["when"])):
        prior -= 2.0  # "where was X born" never wants the birth date
    if "who" in q_words and object_is_entity:
        prior += 0.5
    if "how" in q_words and ("many" in q_words or "much" in q_words) and any(c.isdigit() for c in obj):
        prior += 1.0
    return prior


def rank_facts(question: str, facts: Iterable[FactHit], *, limit: int | None = None) -> list[FactHit]:
    """``facts`` rescored against ``question``, best first; facts restating the question sink."""
    q_content = set(content_words(question))
    scored: list[FactHit] = []
    for fact in facts:
        match = predicate_match(question, fact.predicate)
        prior = _wh_prior(question, fact.predicate, fact.object, fact.object_is_entity)
        obj_words = set(content_words(fact.object))
        echo = len(obj_words & q_content) / len(obj_words) if obj_words else 1.0
        score = 2.0 * match + 0.3 * prior - 0.5 * echo - 0.002 * min(len(fact.object), 200)
        scored.append(fact.model_copy(update={"score": round(score, 4)}))
    scored.sort(key=lambda f: (-f.score, f.triple_id))
    return scored[:limit] if limit is not None else scored


def load_facts(session, entities: Sequence[LinkedEntity], url_for: Callable[[str], str]) -> list[FactHit]:
    """Infobox triples whose subject (or entity object) is a linked entity, unscored."""
    from sqlalchemy import or_, select

    from kg.store import Entity, Triple

    if not entities:
        return []
    ids = [e.entity_id for e in entities]
    titles = [e.title for e in entities]
    rows = session.execute(
        select(Triple, Entity.title)
        .join(Entity, Entity.entity_id == Triple.subject_id)
        .where(Triple.kind == "infobox")
        .where(or_(Triple.subject_id.in_(ids), Triple.object_title.in_(titles)))
        .limit(2000)
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
