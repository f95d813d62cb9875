"""Reciprocal rank fusion: merge rankings whose scores are not comparable (cosine vs BM25 vs PageRank)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

# Cormack et al. (2009): k=60 damps the head of each list so no single ranker dominates.
RRF_K = 60


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[Hashable]],
    *,
    weights: Mapping[str, float] | None = None,
    k: int = RRF_K,
) -> list[tuple[Hashable, float, list[str]]]:
    """Fuse named rankings (best first) into (item, score, names of rankers that found it), best first.

    Each ranking contributes ``weight / (k + rank)`` for rank 1..n. Ties keep the
    order in which items were first seen, so the result is deterministic.
    """
    weights = weights or {}
    scores: dict[Hashable, float] = {}
    found_by: dict[Hashable, list[str]] = {}
    for name, ranking in rankings.items():
        weight = weights.get(name, 1.0)
        seen: set[Hashable] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:  # a ranker listing an item twice only counts once
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
            found_by.setdefault(item, []).append(name)
    order = sorted(scores, key=lambda item: -scores[item])  # stable: first-seen order breaks ties
    return [(item, scores[item], found_by[item]) for item in order]
