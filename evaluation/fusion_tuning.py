"""Choose hybrid's and graph mode's fusion settings (retrieval/tuning.py) on a DEV question set, never the test set.

Hybrid (``tune_hybrid``): every ``HybridFusion`` of the grid (RRF constant, sparse weight,
depth) against plain RRF, by the same rule as below with plain RRF in hybrid's place; a
choice is then checked on held-out questions (``compare``) before it may replace plain RRF.

Each question's rankings (dense, sparse, PPR graph, fact passages) are computed once;
every setting of the grid then only re-fuses them, through the same ``fuse_graph``
that serves answers. Hybrid is the same fusion with no boost.

The rule: graph mode must not rank below hybrid on any metric. A setting is scored by
the share of bootstrap resamples of the questions in which it is at least hybrid on
every metric and above it on at least one ("helps and never hurts"); the setting with
the highest share wins, among those at least hybrid on every metric on the full set.
Ties go to the setting that changes hybrid least (smaller boost weights, a stricter fact
gate, a smaller depth).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from evaluation import metrics as m
from evaluation.questions import EvalQuestion
from evaluation.retrieval_eval import relevance
from kgqa.progress import progress_bar
from retrieval import tuning
from retrieval.pipeline import Rankings, fuse_graph, fuse_hybrid
from retrieval.tuning import PLAIN_RRF, GraphFusion, HybridFusion

METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10",
           "evidence_recall@1", "evidence_recall@5", "evidence_recall@10", "evidence_mrr@10")
NO_BOOST = GraphFusion(graph_weight=0.0, facts_weight=0.0, fact_match=1.0, depth=0)  # fuses as hybrid does
BOOTSTRAP_SAMPLES = 2000
K = 10


@dataclass(frozen=True)
class _Hit:
    """What ``relevance`` reads of a retrieved passage (the tuned sets name gold titles or passages, not text)."""

    passage_id: str
    title: str
    text: str = ""


@dataclass
class TuningCase:
    """One scorable question, its rankings, and what scoring needs: passage titles and nDCG's relevant count."""

    question: EvalQuestion
    rankings: Rankings
    titles: dict[str, str]
    relevant: int | None


def grid() -> list[GraphFusion]:
    """Every setting searched; a zero weight makes its gate moot, so such duplicates are left out."""
    settings = []
    for graph_weight, facts_weight, fact_match, depth in itertools.product(tuning.GRAPH_WEIGHTS, tuning.FACTS_WEIGHTS,
                                                                            tuning.FACT_MATCHES, tuning.DEPTHS):
        if facts_weight == 0 and fact_match != tuning.FACT_MATCHES[0]:
            continue
        if graph_weight == 0 and facts_weight == 0:
            continue
        settings.append(GraphFusion(graph_weight, facts_weight, fact_match, depth))
    return settings


def collect(pipeline, questions: Sequence[EvalQuestion], *, progress: bool = True) -> list[TuningCase]:
    """Each question with gold titles or passages, and its graph-mode rankings (computed once)."""
    from sqlalchemy import select

    from kg.store import Passage

    catalog = pipeline.kb.catalog
    cases = []
    usable = [q for q in questions if not q.unanswerable and (q.gold_titles or q.gold_passage_ids)]
    for question in progress_bar(usable, desc="rankings", unit="question", enabled=progress):
        rankings = pipeline.retrieve(question.question, k=1, mode="graph", with_facts=False).rankings
        ids = set(rankings.dense) | set(rankings.sparse) | set(rankings.graph)
        ids |= {pid for _, passages in rankings.fact_passages for pid in passages}
        with pipeline.kb.session() as session:
            titles = dict(session.execute(select(Passage.id, Passage.title).where(Passage.id.in_(ids))).all())
        relevant = (sum(len(catalog.of_title(t)) for t in question.gold_titles) if question.gold_titles
                    else len(question.gold_passage_ids)) or None
        cases.append(TuningCase(question, rankings, titles, relevant))
    return cases


def per_question(cases: Sequence[TuningCase], fusion: GraphFusion | HybridFusion) -> np.ndarray:
    """(questions x METRICS) scores of one setting; the evidence columns are NaN where no gold passage is named.

    A ``GraphFusion`` is scored through ``fuse_graph``, a ``HybridFusion`` through ``fuse_hybrid``.
    """
    rows = []
    for case in cases:
        fused = fuse_hybrid(case.rankings, fusion) if isinstance(fusion, HybridFusion) else fuse_graph(case.rankings, fusion)
        hits = [_Hit(pid, case.titles.get(pid, "")) for pid, _, _ in fused[:K]]
        ranking = relevance(case.question, hits)
        row = [m.hit_at_k(ranking, 1), m.hit_at_k(ranking, 5), m.hit_at_k(ranking, 10),
               m.reciprocal_rank(ranking, K), m.ndcg_at_k(ranking, K, case.relevant)]
        if case.question.gold_passage_ids:
            gold = set(case.question.gold_passage_ids)
            evidence = [hit.passage_id in gold for hit in hits]
            row += [m.hit_at_k(evidence, 1), m.hit_at_k(evidence, 5), m.hit_at_k(evidence, 10),
                    m.reciprocal_rank(evidence, K)]
        else:
            row += [np.nan] * 4
        rows.append(row)
    return np.array(rows, dtype=float)


def _means(scores: np.ndarray) -> dict[str, float]:
    """Each metric's mean over the questions that have it (a metric no question has is left out)."""
    return {name: float(np.nanmean(scores[:, at])) for at, name in enumerate(METRICS) if not np.isnan(scores[:, at]).all()}


def helps_never_hurts(diff: np.ndarray, *, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> float:
    """Share of bootstrap resamples (of questions) in which every metric's mean gain is >= 0 and one is > 0."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(diff), size=(samples, len(diff)))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a metric no picked question has: a NaN gain, read as 0
        gains = np.nanmean(diff[picks], axis=1)  # samples x metrics
    gains = np.nan_to_num(gains, nan=0.0)
    eps = 1e-12
    return float(np.mean((gains >= -eps).all(axis=1) & (gains > eps).any(axis=1)))


def _score_settings(cases: Sequence[TuningCase], base_fusion, settings: Sequence, *, samples: int, progress: bool,
                    desc: str, at_least: str) -> tuple[dict[str, float], list[dict]]:
    """The base setting's metrics, and per setting: its metrics, whether it is at least the base on every one
    (under the key ``at_least``), and its bootstrap share of helping without hurting."""
    base = per_question(cases, base_fusion)
    base_means = _means(base)
    rows = []
    for fusion in progress_bar(settings, desc=desc, unit="setting", enabled=progress):
        scores = per_question(cases, fusion)
        means = _means(scores)
        rows.append({"fusion": asdict(fusion), "metrics": means, at_least: _at_least(means, base_means),
                     "helps_never_hurts": helps_never_hurts(scores - base, samples=samples)})
    return base_means, rows


def tune(cases: Sequence[TuningCase], *, settings: Sequence[GraphFusion] | None = None,
         samples: int = BOOTSTRAP_SAMPLES, progress: bool = True) -> dict:
    """Score every setting against hybrid on ``cases``; return hybrid's metrics, every setting's, and the choice."""
    if not cases:
        raise ValueError("no scorable question: tuning needs questions with gold titles or gold passages")
    settings = list(settings) if settings is not None else grid()
    base_means, rows = _score_settings(cases, NO_BOOST, settings, samples=samples, progress=progress,
                                       desc="fusion grid", at_least="never_below_hybrid")
    eligible = [row for row in rows if row["never_below_hybrid"]]
    chosen = max(eligible, default=None, key=lambda row: (
        row["helps_never_hurts"], -(row["fusion"]["graph_weight"] + row["fusion"]["facts_weight"]),
        row["fusion"]["fact_match"], -row["fusion"]["depth"]))
    return {"questions": len(cases), "hybrid": base_means, "settings": rows, "chosen": chosen}


def tuning_markdown(result: dict, *, top: int = 15) -> str:
    head = "| graph w | facts w | fact match | depth | helps, never hurts | " + " | ".join(METRICS) + " |"
    lines = [f"### Graph fusion on {result['questions']} dev questions", "",
             "hybrid: " + ", ".join(f"{k} {v:.3f}" for k, v in result["hybrid"].items()), "",
             head, "|" + "---|" * (5 + len(METRICS))]
    ranked = sorted(result["settings"], key=lambda r: (-r["never_below_hybrid"], -r["helps_never_hurts"]))
    for row in ranked[:top]:
        f = row["fusion"]
        lines.append(f"| {f['graph_weight']} | {f['facts_weight']} | {f['fact_match']} | {f['depth']} | "
                     f"{row['helps_never_hurts']:.3f} | " + " | ".join(f"{row['metrics'][n]:.3f}" for n in METRICS)
                     + " |")
    chosen = result["chosen"]
    lines += ["", f"chosen: {chosen['fusion'] if chosen else 'none (no setting is at least hybrid on every metric)'}"]
    return "\n".join(lines)


def _at_least(means: dict[str, float], base: dict[str, float]) -> bool:
    return all(means[name] >= base[name] - 1e-12 for name in base)


def hybrid_grid() -> list[HybridFusion]:
    """Every hybrid setting searched, plain RRF left out (it is the baseline)."""
    settings = [HybridFusion(k=k, sparse_weight=weight, depth=depth) for k, weight, depth
                in itertools.product(tuning.HYBRID_KS, tuning.SPARSE_WEIGHTS, tuning.HYBRID_DEPTHS)]
    return [setting for setting in settings if setting != PLAIN_RRF]


def tune_hybrid(cases: Sequence[TuningCase], *, settings: Sequence[HybridFusion] | None = None,
                samples: int = BOOTSTRAP_SAMPLES, progress: bool = True) -> dict:
    """Score every hybrid setting against plain RRF on ``cases`` (dev); the choice must be at least RRF everywhere.

    Chosen: the highest share of bootstrap resamples in which it helps and never hurts, among
    the settings at least plain RRF on every metric and above it on one; ties go to the setting
    nearest plain RRF. None when no setting is: then plain RRF stays.
    """
    if not cases:
        raise ValueError("no scorable question: tuning needs questions with gold titles or gold passages")
    settings = list(settings) if settings is not None else hybrid_grid()
    base_means, rows = _score_settings(cases, PLAIN_RRF, settings, samples=samples, progress=progress,
                                       desc="hybrid grid", at_least="never_below_rrf")
    for row in rows:
        row["above_rrf"] = any(row["metrics"][name] > base_means[name] + 1e-12 for name in base_means)
    eligible = [row for row in rows if row["never_below_rrf"] and row["above_rrf"]]
    chosen = max(eligible, default=None, key=lambda row: (
        row["helps_never_hurts"], -abs(row["fusion"]["sparse_weight"] - 1), -abs(row["fusion"]["k"] - PLAIN_RRF.k),
        row["fusion"]["depth"] is None, row["fusion"]["depth"] or 0))
    return {"questions": len(cases), "rrf": base_means, "settings": rows, "chosen": chosen}


def compare(cases: Sequence[TuningCase], fusion: HybridFusion, base: HybridFusion = PLAIN_RRF) -> dict:
    """A setting against ``base`` on held-out ``cases``: both metric sets, and whether it is at least ``base`` on all."""
    if not cases:
        raise ValueError("no scorable question to compare on")
    mine, theirs = _means(per_question(cases, fusion)), _means(per_question(cases, base))
    return {"questions": len(cases), "fusion": asdict(fusion), "metrics": mine, "base": asdict(base),
            "base_metrics": theirs, "at_least_base": _at_least(mine, theirs)}


def hybrid_tuning_markdown(result: dict, *, title: str = "dev", top: int = 10) -> str:
    names = list(result["rrf"])
    lines = [f"### Hybrid fusion on {result['questions']} {title} questions", "",
             "plain RRF: " + ", ".join(f"{k} {v:.3f}" for k, v in result["rrf"].items()), "",
             "| k | sparse w | depth | at least RRF | helps, never hurts | " + " | ".join(names) + " |",
             "|" + "---|" * (5 + len(names))]
    ranked = sorted(result["settings"], key=lambda r: (-r["never_below_rrf"], -r["helps_never_hurts"]))
    for row in ranked[:top]:
        f = row["fusion"]
        lines.append(f"| {f['k']} | {f['sparse_weight']} | {f['depth']} | {row['never_below_rrf']} | "
                     f"{row['helps_never_hurts']:.3f} | " + " | ".join(f"{row['metrics'][n]:.3f}" for n in names) + " |")
    chosen = result["chosen"]
    lines += ["", f"chosen: {chosen['fusion'] if chosen else 'none (no setting is at least plain RRF on every metric)'}"]
    return "\n".join(lines)
