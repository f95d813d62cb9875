"""Reciprocal rank fusion: merge rankings whose scores are not comparable (cosine vs BM25 vs PageRank)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence

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


def boosted_fusion(
    base: Mapping[str, Sequence[Hashable]],
    boosts: Mapping[str, Sequence[Hashable]],
    *,
    weights: Mapping[str, float],
    depth: int,
    k: int = RRF_K,
    group: Callable[[Hashable], Hashable] | None = None,
) -> list[tuple[Hashable, float, list[str]]]:
    """RRF of ``base``, then weighted RRF with ``boosts`` that may only reorder the base fusion's top ``depth``.

    ``weights`` weigh base rankings and boosts alike (a name it leaves out weighs 1).

    A boost ranking keeps only the items the base rankings' fusion already has in its
    first ``depth`` places (in the boost's own order), so it can promote a candidate
    the base rankers agree on but never bring in one they missed; a boost with
    nothing left, or weight 0, leaves the base order exactly as it was.

    With ``group`` (an item's article), every place keeps the group the base order gave
    it, and the boosts only choose which of that group's items fills it: the order of
    groups is the base fusion's, by construction, and the boosts pick the passage.
    """
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    fused_base = reciprocal_rank_fusion(base, weights=weights, k=k)
    allowed = {item for item, _, _ in fused_base[:depth]}
    kept = {name: [item for item in ranking if item in allowed] for name, ranking in boosts.items()
            if weights.get(name, 1.0) > 0}
    kept = {name: ranking for name, ranking in kept.items() if ranking}
    if not kept:
        return fused_base
    boosted = reciprocal_rank_fusion({**base, **kept}, weights=weights, k=k)
    if group is None:
        return boosted
    head = boosted[:depth]  # the same items as the base head: boosts only add to those
    if {item for item, _, _ in head} != {item for item, _, _ in fused_base[:depth]}:
        raise AssertionError("a boost changed which items fill the head")  # cannot happen: boosts only add
    queues: dict[Hashable, list] = {}
    for entry in head:
        queues.setdefault(group(entry[0]), []).append(entry)
    for entries in queues.values():
        entries.reverse()  # pop() takes the best first
    return [queues[group(item)].pop() for item, _, _ in fused_base[:depth]] + boosted[depth:]
