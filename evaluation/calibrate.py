"""Calibrate the claim checker for the configured LM: its threshold, chosen on a dev question set.

A stronger model writes other sentences than the one the checker's threshold was
chosen with, so the threshold that keeps wrong answers out may sit elsewhere. This
drafts every dev question once with the configured LM (``KGQA_LM_PATH`` / ``KGQA_LM_URL``;
the drafts are cached), checks every drafted sentence once (its best evidence sentence's
probability does not depend on the threshold), and then composes every answer at each
threshold: the checked sentences at or above it, else the reader's sentence, else an
abstention. The threshold kept is the most accurate that meets the trust targets on dev
(wrong cited answers and abstention on unanswerable questions); the checker's trees
stay as fitted on the hand-written claims. The result is a checker model file the engine
reads through ``KGQA_CHECKER_MODEL``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation import metrics as m
from evaluation.drafts import DraftCache
from evaluation.qa_eval import trust
from evaluation.questions import EvalQuestion
from kgqa.progress import progress_bar
from qa.checker import CheckerModel
from qa.sentences import strip_markers

# The trust targets a choice must meet on dev before accuracy decides between choices.
MAX_WRONG_CITED = 0.03
MIN_ABSTENTION_UNANSWERABLE = 0.97
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 1.0, 0.05))


@dataclass
class Drafted:
    """One dev question: what decides its answer at any threshold."""

    question: EvalQuestion
    early: bool  # the engine abstains before any draft (nothing to answer from)
    lead: str  # the fact sentence that answers outright ("" when none)
    sentences: list[tuple[str, float]]  # each drafted sentence with its checker probability (0 when nothing backs it)
    reader: str  # the reader's sentence where nothing drafted stands ("" when it is not sure enough)


def prepare(engine, questions: Sequence[EvalQuestion], *, drafts: Path | None = None,
            progress: bool = True) -> list[Drafted]:
    composer = engine.composer
    checker = composer.checker
    found = []
    with DraftCache(drafts) as cache:
        for question in progress_bar(questions, desc="calibrate", unit="question", enabled=progress):
            retrieval, prompt = engine.gather(question.question)
            evidence = engine.evidence_to_read(retrieval, prompt)
            grounding = composer.ground(question.question, evidence, retrieval.entities)
            if engine.nothing_to_answer_from(retrieval, prompt) or composer.precheck(grounding):
                found.append(Drafted(question, True, "", [], ""))
                continue
            lead = composer.lead_fact(grounding)
            if lead is not None:
                found.append(Drafted(question, False, lead[0], [], ""))
                continue
            drafted = cache.get(question.id or question.question,
                                lambda: engine.draft(question.question, prompt))
            scored = []
            for sentence in drafted:
                verdict = checker.check(strip_markers(sentence), grounding.frame, grounding.readings)
                scored.append((strip_markers(sentence), verdict.score if verdict.sentence is not None else 0.0))
            read = composer.read(grounding, drafted)
            found.append(Drafted(question, False, "", scored, read.sentence.text if read else ""))
    return found


def answer_at(item: Drafted, threshold: float) -> str:
    """The answer text the engine would show at ``threshold`` ("" for an abstention)."""
    if item.early:
        return ""
    if item.lead:
        return item.lead
    shown = [text for text, probability in item.sentences if probability >= threshold]
    return " ".join(shown) if shown else item.reader


def rows_at(items: Sequence[Drafted], threshold: float) -> list[dict]:
    rows = []
    for item in items:
        answer = answer_at(item, threshold)
        question = item.question
        contained = bool(answer) and bool(question.answers) and m.best_over_golds(
            m.answer_contained, answer, question.answers) > 0
        rows.append({"unanswerable": question.unanswerable, "abstained": not answer, "contained": contained,
                     "kind": question.kind})
    return rows


def calibrate(engine, questions: Sequence[EvalQuestion], *, drafts: Path | None = None, source: str = "",
              progress: bool = True) -> tuple[CheckerModel, dict]:
    """The shipped checker with the threshold that suits the configured LM on these dev questions."""
    items = prepare(engine, questions, drafts=drafts, progress=progress)
    current = engine.composer.checker.model
    grid = sorted(set(THRESHOLDS) | {current.threshold})
    results = [{"threshold": t, **trust(rows_at(items, t))} for t in grid]
    meeting = [r for r in results if (r["wrong_cited"] or 0) <= MAX_WRONG_CITED
               and (r["abstention_unanswerable"] is None or r["abstention_unanswerable"] >= MIN_ABSTENTION_UNANSWERABLE)]
    chosen = max(meeting, key=lambda r: (r["accuracy"] or 0, -r["threshold"])) if meeting else max(
        results, key=lambda r: r["threshold"])
    model = current.with_threshold(chosen["threshold"], calibrated_on=source,
                                   calibrated_model=engine.generator.model_name,
                                   calibrated_dev={k: chosen[k] for k in ("accuracy", "wrong_cited", "false_abstention",
                                                                          "abstention_unanswerable")})
    return model, {"shipped_threshold": current.threshold, "chosen": chosen, "met_targets": bool(meeting),
                   "grid": results, "questions": len(items)}


def calibration_markdown(result: dict) -> str:
    def fmt(value):
        return "n/a" if value is None else f"{value:.3f}"

    lines = ["| threshold | accuracy | wrong cited | false abstention | abstention, unanswerable |", "|---|---|---|---|---|"]
    for row in result["grid"]:
        mark = " **(chosen)**" if row["threshold"] == result["chosen"]["threshold"] else ""
        lines.append(f"| {row['threshold']:.2f}{mark} | {fmt(row['accuracy'])} | {fmt(row['wrong_cited'])} | "
                     f"{fmt(row['false_abstention'])} | {fmt(row['abstention_unanswerable'])} |")
    head = (f"### Claim checker calibrated on {result['questions']} dev questions\n\n"
            f"shipped threshold {result['shipped_threshold']:.3f}; chosen {result['chosen']['threshold']:.3f}"
            + ("" if result["met_targets"] else " (no threshold met both trust targets: the strictest is kept)"))
    return head + "\n\n" + "\n".join(lines)
