"""Pure scoring functions, the way the field computes them.

Rankings are lists of booleans (is the passage at this rank relevant?), so each
metric is checkable by hand. Answer scoring follows the SQuAD evaluation script.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation) | {"–", "—", "‘", "’", "“", "”"}


def first_hit_rank(relevances: Sequence[bool]) -> int | None:
    """1-based rank of the first relevant item, or None for a miss."""
    for position, relevant in enumerate(relevances, start=1):
        if relevant:
            return position
    return None


def hit_at_k(relevances: Sequence[bool], k: int) -> float:
    """1.0 when a relevant item is in the top k (DrQA's "answer recall" per question)."""
    return 1.0 if any(relevances[:k]) else 0.0


def reciprocal_rank(relevances: Sequence[bool], k: int = 10) -> float:
    """1/rank of the first relevant item within the top k, 0 for a miss."""
    rank = first_hit_rank(relevances[:k])
    return 0.0 if rank is None else 1.0 / rank


def ndcg_at_k(relevances: Sequence[bool], k: int = 10, n_relevant: int | None = None) -> float:
    """Binary-relevance nDCG@k.

    The ideal ranking puts ``n_relevant`` relevant items first (capped at k); when the
    corpus count is unknown, the relevant items actually retrieved stand in for it.
    """
    gains = [1.0 if relevant else 0.0 for relevant in relevances[:k]]
    dcg = sum(gain / math.log2(position + 1) for position, gain in enumerate(gains, start=1))
    ideal_count = sum(1 for relevant in relevances if relevant) if n_relevant is None else n_relevant
    ideal_count = min(max(ideal_count, 0), k)
    if ideal_count == 0:
        return 0.0
    idcg = sum(1.0 / math.log2(position + 1) for position in range(1, ideal_count + 1))
    return dcg / idcg


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def mean_reciprocal_rank(rankings: Sequence[Sequence[bool]], k: int = 10) -> float:
    """MRR@k over questions: ranks [1, 3, miss] give (1 + 1/3 + 0) / 3."""
    return mean(reciprocal_rank(ranking, k) for ranking in rankings)


def recall_at_k(rankings: Sequence[Sequence[bool]], k: int) -> float:
    """Share of questions with a relevant passage in the top k."""
    return mean(hit_at_k(ranking, k) for ranking in rankings)


def all_hit_at_k(relevances_per_target: Sequence[Sequence[bool]], k: int) -> float:
    """1.0 when every target has a relevant item in the top k: both hops of a two-hop question.

    One ranking per target, each judged against that target alone; no targets is 0.0, not a vacuous hit.
    """
    if not relevances_per_target:
        return 0.0
    return 1.0 if all(any(relevances[:k]) for relevances in relevances_per_target) else 0.0


def all_hit_recall_at_k(questions: Sequence[Sequence[Sequence[bool]]], k: int) -> float:
    """Share of questions whose every target is in the top k: a chain is found only when each of its links is."""
    return mean(all_hit_at_k(targets, k) for targets in questions)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- answers, as in the SQuAD v1.1 evaluation script -----------------------------------------


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return 1.0 if normalize_answer(prediction) == normalize_answer(gold) else 0.0


def token_f1(prediction: str, gold: str) -> float:
    """Harmonic mean of token precision and recall after normalisation."""
    predicted_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not predicted_tokens or not gold_tokens:
        return 1.0 if predicted_tokens == gold_tokens else 0.0
    common = Counter(predicted_tokens) & Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def answer_contained(prediction: str, gold: str) -> float:
    """1.0 when the normalised gold answer appears as whole words in the normalised prediction."""
    gold_norm = normalize_answer(gold)
    if not gold_norm:
        return 0.0
    return 1.0 if f" {gold_norm} " in f" {normalize_answer(prediction)} " else 0.0


def best_over_golds(metric, prediction: str, golds: Sequence[str]) -> float:
    """SQuAD takes the best score over all acceptable answers."""
    return max((metric(prediction, gold) for gold in golds if gold), default=0.0)


def proportion_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a rate (scipy): what ``successes`` of ``trials`` says of the rate on new questions.

    Wilson, not the normal approximation, because the rates that matter sit near 0 or 1
    (3% wrong, 97% abstention) and sets are small, where the normal interval leaves [0, 1].
    """
    if trials <= 0:
        return None
    from scipy.stats import binomtest

    interval = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)
