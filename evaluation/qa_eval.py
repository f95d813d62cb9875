"""Answer quality end to end: EM/F1, ALCE citation recall and precision, abstention and latency per stage."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from kgqa.errors import KgqaError
from evaluation import metrics as m
from evaluation.evidence import citation_fallback_text
from evaluation.questions import EvalQuestion
from evaluation.support import SupportChecker, judge_sentence, strip_markers
from kgqa.progress import progress_bar
from kgqa.records import Citation, PassageHit, QAResult

STAGES = ("link", "retrieve", "first_token", "first_sentence", "generate", "total")


class Answerer(Protocol):
    def ask(self, question: str) -> QAResult: ...

    def retrieve(self, question: str, *, k: int = 10, mode: str = "hybrid") -> list[PassageHit]: ...


def gold_evidence_retrieved(question: EvalQuestion, citations: Sequence[Citation], hits: Sequence[PassageHit]) -> bool:
    """Did the engine hold a gold passage (or the gold fact) when it answered?"""
    gold_ids = set(question.gold_passage_ids)
    gold_titles = {m.normalize_answer(t) for t in question.gold_titles}
    if any(c.passage_id in gold_ids for c in citations if c.passage_id) or any(h.passage_id in gold_ids for h in hits):
        return True
    for citation in citations:
        if citation.kind == "fact" and m.normalize_answer(citation.title) in gold_titles:
            if m.best_over_golds(m.answer_contained, citation.snippet, question.answers):
                return True
    return False


def picks_the_answer(question: EvalQuestion, shown: str) -> bool:
    """For a comparison whose answer is one of the two things compared: whether ``shown`` names that one first.

    "Lincoln was born before Schopenhauer" holds the answer Schopenhauer and is wrong; a thing is named
    by its title, an alias of the answer, or a word of its title the other's lacks ("Schopenhauer").
    Other questions: True.
    """
    titles = [hop.title for hop in question.hops]
    golds = {m.normalize_answer(a) for a in question.answers}
    if question.hop_kind != "comparison" or len(titles) != 2:
        return True
    winner = next((t for t in titles if m.normalize_answer(t) in golds), None)
    if winner is None:  # "yes", "after", a difference: nothing to pick
        return True
    loser = titles[1] if winner == titles[0] else titles[0]
    text = f" {m.normalize_answer(shown)} "

    def first_at(names: set[str]) -> int:
        found = [text.find(f" {name} ") for name in names if name and f" {name} " in text]
        return min(found, default=len(text))

    own_words, other_words = set(m.normalize_answer(winner).split()), set(m.normalize_answer(loser).split())
    return first_at(golds | (own_words - other_words)) < first_at({m.normalize_answer(loser)} | (other_words - own_words))


def _score_answer(question: EvalQuestion, result: QAResult) -> dict:
    if result.abstained or not question.answers:
        return {"em": 0.0, "f1": 0.0, "contained": 0.0}
    shown = strip_markers(result.answer)
    contained = m.best_over_golds(m.answer_contained, shown, question.answers)
    return {
        "em": m.best_over_golds(m.exact_match, shown, question.answers),
        "f1": m.best_over_golds(m.token_f1, shown, question.answers),
        # a comparison's answer names the thing it picks first: naming both is no answer
        "contained": contained if picks_the_answer(question, shown) else 0.0,
    }


def _judge_citations(checker: SupportChecker, result: QAResult, evidence_text) -> dict:
    by_id = {c.id: c for c in result.citations}
    sentences = supported = citations = precise = 0
    for sentence in result.sentences:
        cited = [evidence_text(by_id[cid]) for cid in sentence.citations if cid in by_id]
        judged = judge_sentence(checker, sentence.text, cited)
        sentences += 1
        supported += judged.supported
        citations += judged.citations
        precise += judged.precise
    return {
        "sentences": sentences,
        "supported_sentences": supported,
        "citations": citations,
        "precise_citations": precise,
        "citation_recall": supported / sentences if sentences else None,
        "citation_precision": precise / citations if citations else None,
        "engine_dropped_sentences": len(result.dropped_sentences),
    }


def _rate(rows: list[dict], key: str) -> float | None:
    return m.mean(float(r[key]) for r in rows) if rows else None


def _by_answerability(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """The answerable and the unanswerable rows; a question whose run failed is in neither."""
    answered = [r for r in rows if not r.get("error")]
    return [r for r in answered if not r["unanswerable"]], [r for r in answered if r["unanswerable"]]


def _trust_counts(rows: list[dict]) -> dict[str, tuple[int, int]]:
    """Each of ``trust``'s rates as (questions it counts, questions it is a share of)."""
    answerable, unanswerable = _by_answerability(rows)
    return {
        "accuracy": (sum(1 for r in answerable if r["contained"]), len(answerable)),
        "wrong_cited": (sum(1 for r in answerable if not r["abstained"] and not r["contained"]), len(answerable)),
        "false_abstention": (sum(1 for r in answerable if r["abstained"]), len(answerable)),
        "abstention_unanswerable": (sum(1 for r in unanswerable if r["abstained"]), len(unanswerable)),
    }


def trust(rows: list[dict]) -> dict:
    """What a user trusting the answers cares about, over ``rows`` (one question kind, or all).

    accuracy: answerable questions answered with the gold answer stated (word-bounded);
    wrong_cited: answerable questions answered, with citations, but without the gold answer;
    false_abstention: answerable questions abstained on; abstention_unanswerable: what it says.
    """
    counts = _trust_counts(rows)
    return {
        "answerable": counts["accuracy"][1],
        "unanswerable": counts["abstention_unanswerable"][1],
        **{name: hits / trials if trials else None for name, (hits, trials) in counts.items()},
    }


def trust_intervals(rows: list[dict]) -> dict[str, list[float] | None]:
    """95% Wilson intervals of ``trust``'s four rates: how far a set this size pins each one down."""
    intervals = {}
    for name, (hits, trials) in _trust_counts(rows).items():
        interval = m.proportion_interval(hits, trials)
        intervals[name] = [round(interval[0], 4), round(interval[1], 4)] if interval else None
    return intervals


def by_kind(rows: list[dict]) -> dict[str, dict]:
    """``trust`` per question kind (who, when, how-many, absent-entity, false-premise, ...)."""
    kinds = sorted({r.get("kind") or "" for r in rows})
    return {kind: trust([r for r in rows if (r.get("kind") or "") == kind]) for kind in kinds}


def _summarise(rows: list[dict]) -> dict:
    answerable, unanswerable = _by_answerability(rows)
    with_gold = [r for r in answerable if r["gold_retrieved"]]
    answered = [r for r in rows if not r.get("error") and not r["abstained"]]
    recalls = [r["citation_recall"] for r in answered if r["citation_recall"] is not None]
    precisions = [r["citation_precision"] for r in answered if r["citation_precision"] is not None]
    latency = {}
    for stage in STAGES:
        values = [r["timings"][stage] for r in rows if not r.get("error")]
        latency[stage] = {"p50_s": m.percentile(values, 50), "p95_s": m.percentile(values, 95)}
    return {
        **trust(rows),
        "intervals_95": trust_intervals(rows),
        "by_kind": by_kind(rows),
        "questions": len(rows),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "errors": sum(1 for r in rows if r.get("error")),
        "exact_match": _rate(answerable, "em"),
        "f1": _rate(answerable, "f1"),
        "answer_contained": _rate(answerable, "contained"),
        "exact_match_when_answered": _rate([r for r in answerable if not r["abstained"]], "em"),
        "answer_contained_when_answered": _rate([r for r in answerable if not r["abstained"]], "contained"),
        # ALCE averages per answer; an abstention has no sentences and is left out.
        "citation_recall": m.mean(recalls) if recalls else None,
        "citation_precision": m.mean(precisions) if precisions else None,
        "answers_with_citations": len(precisions),
        "abstention_answerable": _rate(answerable, "abstained"),
        "abstention_answerable_gold_retrieved": _rate(with_gold, "abstained"),
        "answerable_gold_retrieved": len(with_gold),
        "abstention_unanswerable": _rate(unanswerable, "abstained"),
        "latency": latency,
    }


def evaluate_qa(
    engine: Answerer,
    questions: Sequence[EvalQuestion],
    *,
    checker: SupportChecker | None = None,
    evidence_text: Callable[[Citation], str] = citation_fallback_text,
    retrieval_k: int = 5,
    progress: bool = True,
) -> dict:
    """Ask every question; score answers, citations, abstention and per-stage latency."""
    checker = checker or SupportChecker()
    rows = []
    for question in progress_bar(questions, desc="qa eval", unit="question", enabled=progress):
        row = {"id": question.id, "question": question.question, "gold": question.answer,
               "unanswerable": question.unanswerable, "kind": question.kind}
        try:
            result = engine.ask(question.question)
        except KgqaError as exc:  # one bad question must not sink the run
            rows.append({**row, "error": str(exc), "abstained": True, "gold_retrieved": False})
            continue
        hits = [] if result.citations else engine.retrieve(question.question, k=retrieval_k, mode="graph")
        row.update(
            answer=result.answer,
            cited=[{"id": c.id, "title": c.title, "sentence": c.sentence} for c in result.citations],
            shown=[] if result.abstained else [s.text for s in result.sentences],
            abstained=result.abstained,
            abstain_reason=result.abstain_reason,
            gold_retrieved=not question.unanswerable and gold_evidence_retrieved(question, result.citations, hits),
            timings=result.timings.model_dump(),
            **_score_answer(question, result),
            **_judge_citations(checker, result, evidence_text),
        )
        rows.append(row)
    return {"summary": _summarise(rows), "per_question": rows}
