"""Fit the reader (qa/reader.py) on a dev question set: its weights, candidate count and threshold.

Per question, the engine's own stages run once: retrieval, the prompt's evidence,
the LM's draft over it (cached in a JSONL file, since the draft does not depend on
the reader), and the reading of every retrieved passage. Each candidate sentence is
labelled by whether it states a gold answer (word-bounded, as ``kgqa eval qa`` scores).

Both of the reader's models are fitted on those labels: the pointwise logistic
regression (scikit-learn) and the listwise conditional logit (``fit_listwise``); a
candidate's probability is the lesser of theirs (``qa/reader.py``). The candidate count
and the threshold are chosen on out-of-fold probabilities (5 folds grouped by
article, so no article's questions are both fitted and judged): each question is
answered as the engine would answer it, lead fact included, and the choice kept is
the most accurate that meets the trust targets (wrong cited answers at most 3%,
abstention on unanswerable questions at least 97%). The weights are then refitted
on the whole dev set. The test split is never read here.

How the targets are read on dev is the operator's choice (``--risk``):

- ``empirical``: dev's own rates meet them. On held-out articles this meets them in
  expectation, but a threshold at the edge of dev's rates misses them about as often
  as it meets them on any one new set.
- ``conformal``: conformal risk control (Angelopoulos et al., "Conformal Risk
  Control", 2022): with n dev questions, (n·rate + 1)/(n + 1) must meet the target,
  which bounds the expected rate on new questions from the same distribution. It
  abstains more.

The report measures how either rule holds up: dev's articles are split in halves
at random, the threshold is chosen on one half and judged on the other. It also
says what the targets cost (``trade_off``): the out-of-fold figures at a range of
thresholds, down to 0, where the reader's first choice is always shown. That row's
accuracy is what a perfect abstention rule over this reader's choices would reach,
and the share of questions whose candidates hold the gold answer bounds any ranking
of them; the share whose LM draft states it says how far the LM reads on its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation import metrics as m
from evaluation.drafts import DraftCache
from evaluation.qa_eval import trust
from evaluation.questions import EvalQuestion
from kgqa.progress import progress_bar
from qa.answer import AnswerComposer, Grounding
from qa.reader import FEATURES, ReaderModel, read_candidates
from qa.sentences import strip_markers

# The trust targets a choice must meet on dev before accuracy decides between choices (issue targets).
MAX_WRONG_CITED = 0.03
MIN_ABSTENTION_UNANSWERABLE = 0.97
RISK_RULES = ("empirical", "conformal")
CANDIDATE_COUNTS = (4, 8, 16)
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.20, 0.99, 0.01))
FOLDS = 5
# scikit-learn's default L2 strength; the features are shares and cosines in [0, 1], so unscaled.
REGULARISATION_C = 1.0
# Random halvings of dev's articles for the held-out check in the report.
HALVINGS = 200
# Thresholds of the trade-off table in the report; 0 shows the reader's first choice whenever it has one.
TRADE_OFF = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
_NAMES = (*FEATURES, *(f"{f}_vs_best" for f in FEATURES))


@dataclass
class ReadQuestion:
    """One dev question with everything the reader's weights do not change."""

    question: EvalQuestion
    grounding: Grounding | None  # None when the engine abstains before reading
    drafted: list[str]
    lead: str  # the fact sentence the engine would lead with ("" for none)
    group: str  # the article it is about, for folds


def _group(question: EvalQuestion, grounding: Grounding | None) -> str:
    if question.gold_titles:
        return question.gold_titles[0]
    if grounding is not None and grounding.frame.subject_titles:
        return sorted(grounding.frame.subject_titles)[0]
    return question.id


def prepare(engine, questions: Sequence[EvalQuestion], *, drafts: Path | None = None,
            progress: bool = True) -> list[ReadQuestion]:
    """Retrieve, draft and read once per question; drafts found in ``drafts`` are reused, new ones appended."""
    composer: AnswerComposer = engine.composer
    items = []
    with DraftCache(drafts) as cache:
        for question in progress_bar(questions, desc="fit-reader: reading", unit="question", enabled=progress):
            retrieval, prompt = engine.gather(question.question)
            evidence = engine.evidence_to_read(retrieval, prompt)
            grounding = composer.ground(question.question, evidence, retrieval.entities)
            if engine.nothing_to_answer_from(retrieval, prompt) or composer.precheck(grounding):
                items.append(ReadQuestion(question, None, [], "", _group(question, grounding)))
                continue
            drafted = cache.get(question.id, lambda: engine.draft(question.question, prompt))
            lead = composer.lead_fact(grounding)
            items.append(ReadQuestion(question, grounding, drafted, lead[0] if lead else "",
                                      _group(question, grounding)))
    return items


@dataclass
class _Described:
    """One question's candidates as the reader sees them, and which of them state a gold answer."""

    chosen: list
    matrix: np.ndarray
    gold: np.ndarray


def _describe(composer: AnswerComposer, items: Sequence[ReadQuestion], count: int) -> list[_Described]:
    described = []
    for item in items:
        if item.grounding is None:
            chosen, matrix = [], np.zeros((0, 2 * len(FEATURES)))
        else:
            chosen, matrix = read_candidates(composer.verifier, item.grounding.frame, item.grounding.readings, count,
                                             item.drafted)
        gold = np.array([_states_gold(r.sentence.text, item.question) for r in chosen], dtype=bool)
        described.append(_Described(chosen, matrix, gold))
    return described


def _states_gold(text: str, question: EvalQuestion) -> bool:
    return bool(question.answers) and m.best_over_golds(m.answer_contained, text, question.answers) > 0


def _fit_pointwise(x: np.ndarray, y: np.ndarray) -> tuple[tuple[float, ...], float]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=REGULARISATION_C, max_iter=5000).fit(x, y)
    return tuple(float(w) for w in model.coef_[0]), float(model.intercept_[0])


def listwise_loss(theta: np.ndarray, matrices: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                  c: float) -> tuple[float, np.ndarray]:
    """The penalised negative log-likelihood of ``fit_listwise`` and its gradient.

    ``theta`` is the weights, then the utility of "none". A question's likelihood is the
    softmax share of its candidates that state the gold answer (all of them: a fact often
    stands in more than one sentence), or of "none" when no candidate does.
    """
    from scipy.special import logsumexp

    width = len(theta) - 1
    weights, null = theta[:width], theta[width]
    total = 0.5 * weights @ weights / c
    gradient = np.concatenate([weights / c, [0.0]])
    for matrix, gold in zip(matrices, labels):
        utilities = np.concatenate([[null], matrix @ weights])
        wanted = np.concatenate([[not gold.any()], gold])
        everything, chosen = logsumexp(utilities), logsumexp(utilities[wanted])
        total -= chosen - everything
        residual = np.exp(utilities - everything) - np.where(wanted, np.exp(utilities - chosen), 0.0)
        gradient[:width] += matrix.T @ residual[1:]
        gradient[width] += residual[0]
    return total, gradient


def fit_listwise(matrices: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                 c: float = REGULARISATION_C) -> tuple[tuple[float, ...], float]:
    """A conditional logit over each question's candidates and a "none of them" option.

    The answer is "none" for an unanswerable question and for one whose answer the
    candidates miss. The weights take the L2 penalty of scikit-learn's logistic regression
    at the same C; "none" is unpenalised, as an intercept is. scikit-learn has no model of
    a choice among a varying number of options, so the loss is written here
    (``listwise_loss``) and scipy's L-BFGS minimises it. Returns the weights and the
    utility of "none".
    """
    from scipy.optimize import minimize

    start = np.zeros(matrices[0].shape[1] + 1)
    solution = minimize(listwise_loss, start, args=(matrices, labels, c), jac=True, method="L-BFGS-B",
                        options={"maxiter": 5000})
    return tuple(float(w) for w in solution.x[:-1]), float(solution.x[-1])


def _fit(described: Sequence[_Described], count: int) -> ReaderModel:
    """Both of the reader's models fitted on the candidates of these questions (threshold left at 0.5)."""
    described = [d for d in described if d.chosen]
    matrices, labels = [d.matrix for d in described], [d.gold for d in described]
    x = np.vstack(matrices)
    y = np.concatenate(labels)
    if len(set(y.tolist())) < 2:
        raise ValueError("the reader needs dev questions whose candidates both do and do not state the answer")
    weights, intercept = _fit_pointwise(x, y)
    listwise, null = fit_listwise(matrices, labels)
    return ReaderModel(weights=weights, intercept=intercept, threshold=0.5, candidates=count,
                       listwise_weights=listwise, null_utility=null)


def _rows(items: Sequence[ReadQuestion], best: Sequence[tuple[float, str]], threshold: float) -> list[dict]:
    """The rows ``trust`` reads: each question answered as the engine would at ``threshold``."""
    rows = []
    for item, (probability, sentence) in zip(items, best):
        shown = [item.lead] if item.lead else []  # a fact that answers outright is the whole answer
        if not shown and sentence and probability >= threshold:
            shown.append(sentence)
        answer = " ".join(shown)
        rows.append({"id": item.question.id, "kind": item.question.kind, "unanswerable": item.question.unanswerable,
                     "abstained": not shown, "answer": answer,
                     "contained": 0.0 if not shown else float(_states_gold(answer, item.question))})
    return rows


def _check_risk(risk: str) -> None:
    if risk not in RISK_RULES:
        raise ValueError(f"unknown risk rule {risk!r}: one of {', '.join(RISK_RULES)}")


def meets_targets(figures: dict, risk: str = "empirical") -> bool:
    """Whether ``figures`` meet the trust targets, read by the rule ``risk`` (see the module's docstring)."""
    _check_risk(risk)
    wrong = figures["wrong_cited"] or 0.0
    answered_unanswerable = 1.0 - (figures["abstention_unanswerable"] or 0.0)
    if risk == "conformal":
        n, m = figures["answerable"], figures["unanswerable"]
        wrong = (n * wrong + 1) / (n + 1)
        answered_unanswerable = (m * answered_unanswerable + 1) / (m + 1)
    # a hair of tolerance so that 2/83 answered is read as the 0.024 it is, not above 1 - 0.97 by rounding
    return wrong <= MAX_WRONG_CITED + 1e-9 and answered_unanswerable <= 1.0 - MIN_ABSTENTION_UNANSWERABLE + 1e-9


def _key(figures: dict, risk: str = "empirical") -> tuple:
    feasible = meets_targets(figures, risk)
    utility = ((figures["accuracy"] or 0.0) - (figures["wrong_cited"] or 0.0)
               - (1.0 - (figures["abstention_unanswerable"] or 0.0)))
    return (feasible, figures["accuracy"] or 0.0, -(figures["wrong_cited"] or 0.0)) if feasible else (False, utility, 0.0)


def held_out_halves(items: Sequence[ReadQuestion], best: Sequence[tuple[float, str]], risk: str,
                    repeats: int = HALVINGS, seed: int = 0) -> dict:
    """Choose the threshold by ``risk`` on a random half of the articles and judge it on the other half.

    Returns the mean held-out figures, the 90th percentile of held-out wrong cited answers
    and the share of halvings whose held-out half meets both targets.
    """
    rng = np.random.default_rng(seed)
    rows = {t: _rows(items, best, t) for t in THRESHOLDS}  # row i is question i at every threshold
    groups = sorted({item.group for item in items})
    judged = []
    for _ in range(repeats):
        chosen_groups = set(rng.permutation(groups)[: len(groups) // 2].tolist())
        tune = [i for i, item in enumerate(items) if item.group in chosen_groups]
        judge = [i for i, item in enumerate(items) if item.group not in chosen_groups]
        figures = {t: trust([rows[t][i] for i in tune]) for t in THRESHOLDS}
        threshold = max(THRESHOLDS, key=lambda t: _key(figures[t], risk))
        judged.append(trust([rows[threshold][i] for i in judge]))
    wrong = np.array([f["wrong_cited"] or 0.0 for f in judged])
    return {
        "halvings": repeats,
        "accuracy": round(float(np.mean([f["accuracy"] or 0.0 for f in judged])), 4),
        "wrong_cited": round(float(wrong.mean()), 4),
        "wrong_cited_p90": round(float(np.quantile(wrong, 0.9)), 4),
        "abstention_unanswerable": round(float(np.mean([f["abstention_unanswerable"] or 0.0 for f in judged])), 4),
        "targets_met": round(float(np.mean([meets_targets(f) for f in judged])), 4),
    }


def draft_states_gold(items: Sequence[ReadQuestion]) -> float | None:
    """Share of the answerable questions whose LM draft (markers taken out) states a gold answer."""
    answerable = [item for item in items if not item.question.unanswerable]
    if not answerable:
        return None
    stated = sum(_states_gold(" ".join(strip_markers(s) for s in item.drafted), item.question) for item in answerable)
    return round(stated / len(answerable), 4)


def trade_off(items: Sequence[ReadQuestion], best: Sequence[tuple[float, str]],
              thresholds: Sequence[float] = TRADE_OFF) -> list[dict]:
    """The figures of answering at each of ``thresholds``: what the trust targets cost in accuracy."""
    return [{"threshold": t, "figures": trust(_rows(items, best, t))} for t in thresholds]


def out_of_fold(composer: AnswerComposer, items: Sequence[ReadQuestion], count: int) -> list[tuple[float, str]]:
    """Per question: the best candidate's probability under a model fitted without its article, and its text."""
    from sklearn.model_selection import GroupKFold

    described = _describe(composer, items, count)
    groups = [item.group for item in items]
    best: list[tuple[float, str]] = [(0.0, "")] * len(items)
    index = np.arange(len(items))
    for train, held in GroupKFold(n_splits=FOLDS).split(index, groups=groups):
        model = _fit([described[i] for i in train], count)
        for i in held:
            if described[i].chosen:
                probabilities = model.probabilities(described[i].matrix)
                top = int(np.argmax(probabilities))
                best[i] = (float(probabilities[top]), described[i].chosen[top].sentence.text)
    return best


def fit_reader(engine, questions: Sequence[EvalQuestion], *, drafts: Path | None = None, source: str = "",
               risk: str = "empirical", progress: bool = True) -> tuple[ReaderModel, dict]:
    """The fitted reader and a report of every candidate count and threshold tried on dev."""
    _check_risk(risk)  # before the long reading of dev
    items = prepare(engine, questions, drafts=drafts, progress=progress)
    composer = engine.composer
    tried = []
    out_of_fold_best = {}
    for count in CANDIDATE_COUNTS:
        best = out_of_fold_best[count] = out_of_fold(composer, items, count)
        for threshold in THRESHOLDS:
            rows = _rows(items, best, threshold)
            tried.append({"candidates": count, "threshold": threshold, "figures": trust(rows)})
    tried.sort(key=lambda t: _key(t["figures"], risk), reverse=True)
    chosen = tried[0]
    count = chosen["candidates"]
    halves = {rule: held_out_halves(items, out_of_fold_best[count], rule) for rule in RISK_RULES}
    costs = trade_off(items, out_of_fold_best[count], sorted({*TRADE_OFF, chosen["threshold"]}))
    described = _describe(composer, items, count)
    model = _fit(described, count)
    answerable = sum(1 for q in questions if not q.unanswerable)
    ceiling = sum(1 for item, d in zip(items, described) if not item.question.unanswerable and d.gold.any())
    provenance = {
        "fitted_on": source, "questions": len(questions), "answerable": answerable,
        "unanswerable": len(questions) - answerable,
        "rule": (f"5-fold out-of-fold probabilities grouped by article; the most accurate candidate count and threshold "
                 f"with wrong cited <= {MAX_WRONG_CITED} and abstention on unanswerable >= {MIN_ABSTENTION_UNANSWERABLE} "
                 f"read by the {risk} rule; weights then refitted on all of dev"),
        "risk": risk,
        "dev_out_of_fold": chosen["figures"],
        "dev_held_out_halves": halves[risk],
        "dev_candidate_holds_gold": round(ceiling / answerable, 4) if answerable else None,
        "dev_first_choice_states_gold": round(next(c["figures"]["accuracy"] for c in costs if c["threshold"] == 0.0), 4),
        "dev_draft_states_gold": draft_states_gold(items),
        "regularisation_c": REGULARISATION_C,
    }
    fitted = dataclasses.replace(model, threshold=chosen["threshold"], provenance=provenance)
    report = {"chosen": chosen, "tried": tried, "provenance": provenance, "held_out_halves": halves, "trade_off": costs,
              "weights": dict(zip(_NAMES, fitted.weights)), "listwise_weights": dict(zip(_NAMES, fitted.listwise_weights)),
              "null_utility": fitted.null_utility}
    return fitted, report


def fit_markdown(report: dict) -> str:
    lines = ["### Reader fitted on dev (out-of-fold figures)", "",
             "| candidates | threshold | accuracy | wrong cited | false abstention | abstention, unanswerable |",
             "|---|---|---|---|---|---|"]
    for entry in [report["chosen"], *report["tried"][1:8]]:
        f = entry["figures"]
        lines.append(f"| {entry['candidates']} | {entry['threshold']:.2f} | {f['accuracy']:.3f} | {f['wrong_cited']:.3f} | "
                     f"{f['false_abstention']:.3f} | {f['abstention_unanswerable']:.3f} |")
    lines += ["", f"Held out: the threshold chosen on a random half of dev's articles, judged on the other half "
              f"({report['held_out_halves']['empirical']['halvings']} halvings, {report['chosen']['candidates']} "
              "candidates):", "",
              "| rule | accuracy | wrong cited (mean / p90) | abstention, unanswerable | both targets met |",
              "|---|---|---|---|---|"]
    for rule, h in report["held_out_halves"].items():
        lines.append(f"| {rule} | {h['accuracy']:.3f} | {h['wrong_cited']:.3f} / {h['wrong_cited_p90']:.3f} | "
                     f"{h['abstention_unanswerable']:.3f} | {h['targets_met']:.0%} |")
    lines += ["", f"What the targets cost ({report['chosen']['candidates']} candidates, out of fold; at threshold 0 "
              "the reader's first choice is always shown). Candidates hold the gold answer for "
              f"{report['provenance']['dev_candidate_holds_gold']:.3f} of answerable questions; the LM's own draft "
              f"states it for {report['provenance']['dev_draft_states_gold']:.3f}.", "",
              "| threshold | accuracy | wrong cited | false abstention | abstention, unanswerable |",
              "|---|---|---|---|---|"]
    for entry in report["trade_off"]:
        f = entry["figures"]
        lines.append(f"| {entry['threshold']:.2f} | {f['accuracy']:.3f} | {f['wrong_cited']:.3f} | "
                     f"{f['false_abstention']:.3f} | {f['abstention_unanswerable']:.3f} |")
    lines += ["", "Pointwise weights: " + ", ".join(f"{k} {v:+.2f}" for k, v in report["weights"].items()),
              "", "Listwise weights: " + ", ".join(f"{k} {v:+.2f}" for k, v in report["listwise_weights"].items())
              + f"; none of them {report['null_utility']:+.2f}"]
    return "\n".join(lines)
