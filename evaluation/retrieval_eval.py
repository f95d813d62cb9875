"""Retrieval quality per retriever: recall@k, MRR@10 and nDCG@10, side by side, in one run.

A hit is a retrieved passage from a gold article; with no gold article, a passage in
``gold_passage_ids``; with neither, a passage containing the answer string. The
evidence-level metrics are stricter: only a gold passage that states the answer counts,
over the questions that have one (the article-level hit is easy when the question names
its subject).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from evaluation import metrics as m
from evaluation.questions import EvalQuestion
from kgqa.progress import progress_bar
from kgqa.records import PassageHit

MODES = ("dense", "sparse", "hybrid", "graph")
MODE_LABELS = {"dense": "dense", "sparse": "sparse (BM25)", "hybrid": "hybrid", "graph": "hybrid + graph"}
CURVE_KS = tuple(range(1, 11))


class Retriever(Protocol):
    def retrieve(self, question: str, *, k: int = 10, mode: str = "hybrid") -> list[PassageHit]: ...


def relevance(question: EvalQuestion, hits: Sequence[PassageHit]) -> list[bool]:
    """Which retrieved passages count as hits for this question (see the module docstring)."""
    if question.gold_titles:
        gold = {m.normalize_answer(title) for title in question.gold_titles}
        return [m.normalize_answer(hit.title) in gold for hit in hits]
    if question.gold_passage_ids:
        gold_ids = set(question.gold_passage_ids)
        return [hit.passage_id in gold_ids for hit in hits]
    needles = [f" {m.normalize_answer(a)} " for a in question.answers if m.normalize_answer(a)]
    return [any(n in f" {m.normalize_answer(hit.text)} " for n in needles) for hit in hits]


def is_scorable(question: EvalQuestion) -> bool:
    return not question.unanswerable and bool(question.gold_titles or question.gold_passage_ids or question.answer)


def evaluate_retrieval(
    engine: Retriever,
    questions: Sequence[EvalQuestion],
    *,
    modes: Sequence[str] = MODES,
    k: int = 10,
    relevant_count: Callable[[EvalQuestion], int | None] = lambda q: None,
    progress: bool = True,
) -> dict:
    """Run every retriever on every scorable question; return aggregate metrics and per-question ranks."""
    scorable = [q for q in questions if is_scorable(q)]
    rankings: dict[str, list[list[bool]]] = {mode: [] for mode in modes}
    evidence: dict[str, list[list[bool]]] = {mode: [] for mode in modes}
    ndcgs: dict[str, list[float]] = {mode: [] for mode in modes}
    latencies: dict[str, list[float]] = {mode: [] for mode in modes}
    per_question = []
    bar = progress_bar(total=len(scorable) * len(modes), desc="retrieval eval", unit="query", enabled=progress)
    for question in scorable:
        row = {"id": question.id, "question": question.question, "first_hit_rank": {}}
        n_relevant = relevant_count(question)
        for mode in modes:
            started = time.perf_counter()
            hits = engine.retrieve(question.question, k=k, mode=mode)[:k]
            latencies[mode].append(time.perf_counter() - started)
            ranking = relevance(question, hits)
            rankings[mode].append(ranking)
            ndcgs[mode].append(m.ndcg_at_k(ranking, k, n_relevant))
            if question.gold_passage_ids:
                gold_ids = set(question.gold_passage_ids)
                evidence[mode].append([h.passage_id in gold_ids for h in hits])
            row["first_hit_rank"][mode] = m.first_hit_rank(ranking)
            bar.update(1)
        per_question.append(row)
    bar.close()
    results = {}
    for mode in modes:
        results[mode] = {
            "recall@1": m.recall_at_k(rankings[mode], 1),
            "recall@5": m.recall_at_k(rankings[mode], 5),
            "recall@10": m.recall_at_k(rankings[mode], 10),
            "mrr@10": m.mean_reciprocal_rank(rankings[mode], 10),
            "ndcg@10": m.mean(ndcgs[mode]),
            "evidence_recall@1": m.recall_at_k(evidence[mode], 1) if evidence[mode] else None,
            "evidence_recall@5": m.recall_at_k(evidence[mode], 5) if evidence[mode] else None,
            "evidence_recall@10": m.recall_at_k(evidence[mode], 10) if evidence[mode] else None,
            "evidence_mrr@10": m.mean_reciprocal_rank(evidence[mode], 10) if evidence[mode] else None,
            "latency_p50_ms": 1000 * m.percentile(latencies[mode], 50),
            "curve": [m.recall_at_k(rankings[mode], c) for c in CURVE_KS if c <= k],
            "evidence_curve": [m.recall_at_k(evidence[mode], c) for c in CURVE_KS if c <= k] if evidence[mode] else [],
        }
    return {
        "questions": len(scorable),
        "evidence_questions": sum(1 for q in scorable if q.gold_passage_ids),
        "skipped_unanswerable": len(questions) - len(scorable),
        "k": k,
        "modes": results,
        "per_question": per_question,
    }
