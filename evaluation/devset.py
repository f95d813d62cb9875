"""Generate a dev question set from the knowledge graph itself, so it grows with any dump.

Answerable questions come from infobox triples through ``templates``; each keeps the
fact's provenance and the subject passages that state the answer. Unanswerable ones
ask about entities the KB does not hold, facts a subject lacks, or the future.
Every query reads in id order and text is matched in Python, so SQLite and
PostgreSQL give the same dev set.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from kg.store import Alias, Entity, Page, Passage, Triple
from evaluation import templates as tpl
from evaluation.metrics import normalize_answer
from evaluation.questions import EvalQuestion, FactSource

_SYLLABLES = ["vel", "mor", "tra", "quin", "dol", "bar", "sen", "ka", "lith", "ost", "pra", "zun", "eri", "gal"]
_PLACE_ENDINGS = ["ia", "stan", "ora", "land", "mark"]
_FUTURE_PLACE = [
    "Who will lead {s} in {year}?",
    "What will the population of {s} be in {year}?",
    "Who will win the {year} general election in {s}?",
    "Who will be the head of state of {s} in {year}?",
]
_FUTURE_GENERIC = [
    "Who will win the {year} Nobel Prize in Physics?",
    "Which country will host the {year} Summer Olympics?",
    "Who will win the {year} FIFA World Cup?",
]


@dataclass
class _Fact:
    subject: str
    page_id: int
    predicate: str  # canonical
    answer: str
    source: FactSource


def _facts(session: Session) -> list[_Fact]:
    """Infobox triples with a template that fits their subject and a clean answer as object."""
    rows = session.execute(
        select(Entity.title, Triple).join(Triple, Triple.subject_id == Entity.entity_id).where(Triple.kind == "infobox")
        .order_by(Triple.id)
    )
    facts = []
    for title, triple in rows:
        predicate = tpl.canonical_predicate(triple.predicate)
        if predicate not in tpl.TEMPLATES or tpl.is_survey_title(title):
            continue
        answer = tpl.clean_answer(triple.object_title or triple.object_literal or "", predicate)
        if answer is None or normalize_answer(answer) == normalize_answer(title):
            continue
        source = FactSource(page_id=triple.page_id, rev_id=triple.rev_id, field=triple.field)
        facts.append(_Fact(title, triple.subject_id, predicate, answer, source))
    return _fitting_family(facts)


def _fitting_family(facts: list[_Fact]) -> list[_Fact]:
    """Keep a fact when its template suits the subject: "In what language is Ayn Rand?" must not be asked.

    A subject's family is the one most of its templated facts vote for, and needs two
    distinct facts of that family, so a lone key ("language" on a standards body) asks nothing.
    """
    predicates: dict[str, set[str]] = defaultdict(set)
    for fact in facts:
        predicates[fact.subject].add(fact.predicate)
    keep = []
    for fact in facts:
        family = tpl.subject_family(predicates[fact.subject])
        same_family = {p for p in predicates[fact.subject] if tpl.TEMPLATES[p].family == family}
        if tpl.TEMPLATES[fact.predicate].family == family and len(same_family) >= 2:
            keep.append(fact)
    return keep


def _aliases_of(session: Session, title: str) -> list[str]:
    entity = session.scalar(select(Entity).where(Entity.title == title))
    if entity is None:
        return []
    return list(session.scalars(select(Alias.alias).where(Alias.entity_id == entity.entity_id).order_by(Alias.id)))


def _passages_by_page(session: Session) -> dict[int, list[tuple[str, str]]]:
    by_page: dict[int, list[tuple[str, str]]] = defaultdict(list)
    rows = session.execute(select(Passage.id, Passage.page_id, Passage.text).order_by(Passage.page_id, Passage.ordinal))
    for passage_id, page_id, text in rows:
        by_page[page_id].append((passage_id, f" {normalize_answer(text)} "))
    return by_page


def _answerable(session: Session, facts: list[_Fact], by_page) -> list[EvalQuestion]:
    grouped: dict[tuple[str, str], list[_Fact]] = defaultdict(list)
    for fact in facts:
        grouped[(fact.subject, tpl.TEMPLATES[fact.predicate].text)].append(fact)
    questions = []
    for (subject, text), group in sorted(grouped.items()):
        first = group[0]
        passages = by_page.get(first.page_id, [])
        answers = [_without_footnote_letter(f.answer, passages) for f in group]
        for answer in list(answers):
            answers += tpl.answer_variants(answer) + _aliases_of(session, answer)
        answers = list(dict.fromkeys(a for a in answers if tpl.clean_answer(a, first.predicate)))
        needles = [f" {normalize_answer(a)} " for a in answers if normalize_answer(a)]
        gold_passages = [pid for pid, norm in passages if any(n in norm for n in needles)]
        questions.append(
            EvalQuestion(
                id=f"fact-{first.page_id}-{first.predicate}",
                question=text.format(s=tpl.subject_phrase(subject)),
                answer=answers[0],
                answer_aliases=answers[1:],
                gold_titles=[subject],
                gold_passage_ids=gold_passages,
                predicate=first.predicate,
                source=first.source,
            )
        )
    return questions


def _without_footnote_letter(answer: str, passages: list[tuple[str, str]]) -> str:
    """Undo a footnote letter glued to an infobox value ("Eurod" for "Euro" + note d) when the text says so."""
    text = " ".join(norm for _, norm in passages)
    trimmed = answer[:-1]
    if (len(answer) > 4 and answer[-1].islower() and answer[-2].isalpha()
            and f" {normalize_answer(answer)} " not in text and f" {normalize_answer(trimmed)} " in text):
        return trimmed
    return answer


def _invented_name(rng: random.Random, family: str) -> str:
    stem = "".join(rng.sample(_SYLLABLES, 2)).capitalize()
    if family == tpl.PLACE:
        return stem + rng.choice(_PLACE_ENDINGS)
    if family == tpl.PERSON:
        return f"{stem} {''.join(rng.sample(_SYLLABLES, 2)).capitalize()}ski"
    return f"The {stem} Chronicles"


def _unknown_to_kb(session: Session, name: str, by_page) -> bool:
    """True when no title, alias or passage mentions ``name``.

    Passages are searched folded, in Python: SQL ``LIKE`` ignores ASCII case on
    SQLite but not on PostgreSQL.
    """
    norm = normalize_answer(name)
    if session.scalar(select(Alias.id).where(Alias.norm == norm).limit(1)) is not None:
        return False
    if session.scalar(select(Page.page_id).where(Page.title == name).limit(1)) is not None:
        return False
    needle = f" {norm} "
    return not any(needle in text for passages in by_page.values() for _, text in passages)


def _unanswerable(session: Session, facts: list[_Fact], by_page, rng: random.Random, count: int) -> list[EvalQuestion]:
    predicates_by_subject: dict[str, set[str]] = defaultdict(set)
    page_of: dict[str, int] = {}
    for fact in facts:
        predicates_by_subject[fact.subject].add(fact.predicate)
        page_of[fact.subject] = fact.page_id
    families = {s: tpl.subject_family(p) for s, p in predicates_by_subject.items()}
    out: list[EvalQuestion] = []
    used_texts = sorted({(t.text, t.family) for t in tpl.TEMPLATES.values()})

    # 1. The templates on invented subjects the KB has never heard of.
    for text, family in rng.sample(used_texts, min(len(used_texts), max(1, count // 3))):
        name = _invented_name(rng, family)
        if _unknown_to_kb(session, name, by_page):
            out.append(EvalQuestion(id=f"none-entity-{len(out)}", question=text.format(s=name),
                                    unanswerable=True, kind="missing_entity"))

    # 2. A fact of the subject's own kind that neither its infobox (even unscorable) nor its text states.
    raw_predicates: dict[str, set[str]] = defaultdict(set)
    for title, predicate in session.execute(
        select(Entity.title, Triple.predicate).join(Triple, Triple.subject_id == Entity.entity_id)
        .where(Triple.kind == "infobox")
    ):
        raw_predicates[title].add(tpl.canonical_predicate(predicate))
    candidates = []
    for subject, family in sorted(families.items()):
        passages = " ".join(norm for _, norm in by_page.get(page_of[subject], []))
        asked = {tpl.TEMPLATES[p].text for p in raw_predicates[subject] if p in tpl.TEMPLATES}
        for predicate, template in sorted(tpl.TEMPLATES.items()):
            if template.family != family or template.text in asked or predicate not in tpl.ABSENCE_PREDICATES:
                continue
            if any(f" {normalize_answer(k)}" in passages for k in template.keywords):
                continue
            candidates.append((subject, template.text))
    seen = set()
    for subject, text in rng.sample(candidates, len(candidates)):
        question = text.format(s=tpl.subject_phrase(subject))
        if question in seen or len(seen) >= max(1, count // 3):
            continue
        seen.add(question)
        out.append(EvalQuestion(id=f"none-fact-{len(out)}", question=question, gold_titles=[subject],
                                unanswerable=True, kind="missing_fact"))

    # 3. Questions about the future, on real subjects and in general.
    future = [(t, s) for s, f in sorted(families.items()) if f == tpl.PLACE for t in _FUTURE_PLACE]
    future += [(t, "") for t in _FUTURE_GENERIC]
    for text, subject in rng.sample(future, min(len(future), max(1, count - len(out)))):
        question = text.format(s=tpl.subject_phrase(subject), year=rng.randint(2091, 2140))
        out.append(EvalQuestion(id=f"none-future-{len(out)}", question=question, unanswerable=True, kind="future"))
    return _interleave_kinds(out)[:count]


def _interleave_kinds(questions: list[EvalQuestion]) -> list[EvalQuestion]:
    """Round-robin over the kinds so a small cap still keeps every kind."""
    by_kind: dict[str, list[EvalQuestion]] = defaultdict(list)
    for question in questions:
        by_kind[question.kind].append(question)
    ordered = []
    while any(by_kind.values()):
        for kind in list(by_kind):
            if by_kind[kind]:
                ordered.append(by_kind[kind].pop(0))
    return ordered


def make_devset(session: Session, *, max_questions: int | None = None, seed: int = 13,
                unanswerable_share: float = 0.25) -> list[EvalQuestion]:
    """Answerable questions from infobox facts plus a share of unanswerable ones, deterministic per seed."""
    rng = random.Random(seed)
    facts = _facts(session)
    by_page = _passages_by_page(session)
    answerable = _answerable(session, facts, by_page)
    rng.shuffle(answerable)
    if max_questions is not None:
        answerable = answerable[: max(1, round(max_questions * (1 - unanswerable_share)))]
    wanted = max(3, round(len(answerable) * unanswerable_share / (1 - unanswerable_share)))
    if max_questions is not None:
        wanted = max(1, min(wanted, max_questions - len(answerable)))
    return _spread(answerable, _unanswerable(session, facts, by_page, rng, wanted))


def _spread(answerable: list[EvalQuestion], unanswerable: list[EvalQuestion]) -> list[EvalQuestion]:
    """Mix the unanswerable questions evenly in, so the first N (``--limit``) hold both kinds."""
    total = len(answerable) + len(unanswerable)
    ordered, a, u = [], iter(answerable), iter(unanswerable)
    for position in range(total):
        due = (position + 1) * len(unanswerable) // total > position * len(unanswerable) // total
        ordered.append(next(u) if due else next(a))
    return ordered
