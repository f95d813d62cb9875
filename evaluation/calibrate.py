"""Choose the claim checks' thresholds on a dev question set, never on the test set.

The expensive part of answering (retrieval, the LM's draft, reading the evidence)
does not depend on the thresholds, so it runs once per question; every candidate
``Thresholds`` then re-composes all answers from those readings, and the one kept
is the most accurate that meets the trust targets (wrong cited answers and
abstention on unanswerable questions). The result, with the grid and the runner-up
figures, goes to a report that ``qa/tuning.py`` cites.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from tqdm import tqdm

from evaluation import metrics as m
from evaluation.drafts import DraftCache
from evaluation.qa_eval import trust
from evaluation.questions import EvalQuestion
from qa.answer import Grounding
from qa.tuning import Thresholds

# The trust targets a choice must meet on dev before accuracy decides between choices.
MAX_WRONG_CITED = 0.03
MIN_ABSTENTION_UNANSWERABLE = 0.97

# The claim checks' values around those the full grid chose (qa/tuning.py, 3,600 combinations).
GRID: dict[str, Sequence] = {
    "relation_match": (0.5, 0.55, 0.6, 0.7),
    "relation_share": (0.5, 0.67, 1.0),
    "question_similarity": (0.5, 0.6, 0.7),
    "own_article_only": (True, False),
}


@dataclass
class Prepared:
    """One dev question with everything the thresholds do not change."""

    question: EvalQuestion
    grounding: Grounding | None  # None when retrieval found nothing to answer from
    drafted: list[str]
    early_reason: str  # the engine's own abstention before grounding ("nothing retrieved", ...)


def prepare(engine, questions: Sequence[EvalQuestion], *, drafts: Path | None = None,
            progress: bool = True) -> list[Prepared]:
    """Retrieve, draft with the LM and read the evidence once per question.

    ``drafts`` is a JSONL file of the LM's drafts by question id: drafts found there are
    reused (the LM is the slow part, and its drafts do not depend on the thresholds or
    the claim checks), new ones are appended to it as they are made.
    """
    prepared = []
    composer = engine.composer
    with DraftCache(drafts) as cache:
        for question in tqdm(questions, desc="calibrate: drafting", unit="question", disable=not progress):
            retrieval, evidence = engine.prepare(question.question)
            early = engine.nothing_to_answer_from(retrieval, evidence)
            grounding = composer.ground(question.question, engine.evidence_to_read(retrieval, evidence),
                                        retrieval.entities)
            drafted = [] if early else cache.get(question.id, lambda: engine.draft(question.question, evidence))
            prepared.append(Prepared(question, grounding, drafted, early))
    return prepared


def judge(composer, item: Prepared) -> dict:
    """The row ``trust`` reads, for one question answered under the composer's current thresholds."""
    question = item.question
    if item.early_reason:
        abstained, answer = True, ""
    else:
        reason = composer.precheck(item.grounding)
        grounded = (composer.abstain(question.question, item.grounding.evidence, reason) if reason
                    else composer.compose_grounded(item.grounding, item.drafted))
        abstained, answer = grounded.abstained, grounded.answer
    contained = 0.0 if abstained or not question.answers else m.best_over_golds(
        m.answer_contained, answer, question.answers)
    return {"id": question.id, "kind": question.kind, "unanswerable": question.unanswerable,
            "abstained": abstained, "contained": contained, "answer": answer}


def score(composer, items: Sequence[Prepared], thresholds: Thresholds) -> tuple[dict, list[dict]]:
    composer.verifier.thresholds = thresholds
    rows = [judge(composer, item) for item in items]
    return trust(rows), rows


def utility(figures: dict) -> float:
    """Right answers gained minus trust lost: a wrong cited answer, or an answer to an unanswerable
    question, costs as much as a right answer gains."""
    return ((figures["accuracy"] or 0.0) - (figures["wrong_cited"] or 0.0)
            - (1.0 - (figures["abstention_unanswerable"] or 0.0)))


def _key(figures: dict) -> tuple:
    """Choices meeting both trust targets first; among them the most accurate; else the highest utility."""
    feasible = ((figures["wrong_cited"] or 0.0) <= MAX_WRONG_CITED
                and (figures["abstention_unanswerable"] or 0.0) >= MIN_ABSTENTION_UNANSWERABLE)
    return (feasible, figures["accuracy"] or 0.0) if feasible else (False, utility(figures))


def calibrate(engine, questions: Sequence[EvalQuestion], *, grid: dict[str, Sequence] | None = None,
              drafts: Path | None = None, progress: bool = True) -> dict:
    """The best thresholds on ``questions`` (dev), with the figures of the current defaults beside them."""
    grid = grid or GRID
    items = prepare(engine, questions, drafts=drafts, progress=progress)
    composer = engine.composer
    original = composer.verifier.thresholds
    try:
        default_figures, _ = score(composer, items, Thresholds())
        names = [f.name for f in fields(Thresholds) if f.name in grid]
        combos = list(itertools.product(*(grid[name] for name in names)))
        results = []
        for values in tqdm(combos, desc="calibrate: grid", unit="combination", disable=not progress):
            thresholds = replace(Thresholds(), **dict(zip(names, values)))
            figures, _ = score(composer, items, thresholds)
            results.append((figures, thresholds))
        results.sort(key=lambda pair: _key(pair[0]), reverse=True)
        best_figures, best = results[0]
        _, rows = score(composer, items, best)
    finally:
        composer.verifier.thresholds = original
    return {
        "questions": len(questions),
        "targets": {"max_wrong_cited": MAX_WRONG_CITED, "min_abstention_unanswerable": MIN_ABSTENTION_UNANSWERABLE},
        "grid": {name: list(values) for name, values in grid.items()},
        "combinations": len(results),
        "feasible": sum(1 for figures, _ in results if _key(figures)[0]),
        "defaults": {"thresholds": asdict(Thresholds()), "figures": default_figures},
        "best": {"thresholds": asdict(best), "figures": best_figures},
        "runners_up": [{"thresholds": asdict(t), "figures": f} for f, t in results[1:6]],
        "per_question": rows,
    }


def calibration_markdown(report: dict) -> str:
    def row(label, block):
        f = block["figures"]
        t = block["thresholds"]
        return (f"| {label} | {f['accuracy']:.3f} | {f['wrong_cited']:.3f} | {f['false_abstention']:.3f} | "
                f"{f['abstention_unanswerable']:.3f} | {utility(f):.3f} | " + ", ".join(f"{k}={v}" for k, v in t.items()) + " |")

    lines = [
        f"### Calibration on {report['questions']} dev questions "
        f"({report['feasible']} of {report['combinations']} combinations meet the targets)",
        "",
        "| thresholds | accuracy | wrong cited | false abstention | abstention, unanswerable | utility | values |",
        "|---|---|---|---|---|---|---|",
        row("defaults (qa/tuning.py)", report["defaults"]),
        row("best", report["best"]),
    ]
    lines += [row(f"runner-up {i}", block) for i, block in enumerate(report["runners_up"], start=1)]
    return "\n".join(lines)
