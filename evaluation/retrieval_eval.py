"""Retrieval quality per retriever: recall@k, MRR@10 and nDCG@10, side by side, in one run.

A hit is a retrieved passage from a gold article; with no gold article, a passage in
``gold_passage_ids``; with neither, a passage containing the answer string. The
evidence-level metrics are stricter: only a gold passage that states the answer counts,
over the questions that have one (the article-level hit is easy when the question names
its subject).

Multi-hop questions (``hops``) are scored once more per hop: a hop is found when its own
evidence passage is retrieved, and the chain only when both hops' passages are in the top k,
over the answerable ones, per hop kind (bridge, comparison) and in all.
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
CHAIN_KS = (5, 10)


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


def hop_relevance(question: EvalQuestion, hits: Sequence[PassageHit]) -> list[list[bool]]:
    """One ranking per hop: which retrieved passages are that hop's evidence passage."""
    return [[hit.passage_id == passage_id for hit in hits] for passage_id in question.hop_passage_ids]


def chain_summary(chains: dict[str, list[list[list[bool]]]], k: int) -> dict[str, dict]:
    """Per hop kind and in all: questions, both hops found at 5, 10 and k (those <= k), each hop alone at k."""
    summary = {}
    groups = {kind: chains[kind] for kind in sorted(chains)}
    if chains:
        groups["all"] = [ranking for kind in sorted(chains) for ranking in chains[kind]]
    for kind, rankings in groups.items():
        row: dict = {"questions": len(rankings)}
        row.update({f"both_hops@{c}": m.all_hit_recall_at_k(rankings, c) for c in sorted({*CHAIN_KS, k}) if c <= k})
        for position in range(max((len(hops) for hops in rankings), default=0)):
            row[f"hop{position + 1}@{k}"] = m.mean(m.hit_at_k(hops[position], k) if position < len(hops) else 0.0
                                                   for hops in rankings)
        summary[kind] = row
    return summary


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
    chains: dict[str, dict[str, list[list[list[bool]]]]] = {mode: {} for mode in modes}
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
            if question.hops:
                per_hop = hop_relevance(question, hits)
                chains[mode].setdefault(question.hop_kind, []).append(per_hop)
                row.setdefault("hop_ranks", {})[mode] = [m.first_hit_rank(hop) for hop in per_hop]
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
        if chains[mode]:
            results[mode]["chain"] = chain_summary(chains[mode], k)
    return {
        "questions": len(scorable),
        "evidence_questions": sum(1 for q in scorable if q.gold_passage_ids),
        "multihop_questions": sum(1 for q in scorable if q.hops),
        "skipped_unanswerable": len(questions) - len(scorable),
        "k": k,
        "modes": results,
        "per_question": per_question,
    }
