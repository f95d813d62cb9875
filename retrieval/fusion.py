"""Reciprocal rank fusion: merge rankings whose scores are not comparable (cosine vs BM25 vs PageRank)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Mapping, Sequence

# Cormack et al. (2009): k=60 damps the head of each list so no single ranker dominates.
RRF_K = 60

# One fused entry: the item, its fused score, and the names of the rankers (or steps) that placed it.
Fused = tuple[Hashable, float, list[str]]


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[Hashable]],
    *,
    weights: Mapping[str, float] | None = None,
    k: int = RRF_K,
) -> list[Fused]:
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
    keep: Collection[Hashable] = (),
) -> list[Fused]:
    """RRF of ``base``, then weighted RRF with ``boosts`` that may only reorder the base fusion's top ``depth``.

    ``weights`` weigh base rankings and boosts alike (a name it leaves out weighs 1).

    A boost ranking keeps only the items the base rankings' fusion already has in its
    first ``depth`` places (in the boost's own order), so it can promote a candidate
    the base rankers agree on but never bring in one they missed; a boost with
    nothing left, or weight 0, leaves the base order exactly as it was. An item of
    ``keep`` keeps its base place: no boost moves it, and none moves another item above it.

    With ``group`` (an item's article), every place keeps the group the base order gave
    it, and the boosts only choose which of that group's items fills it: the order of
    groups is the base fusion's, by construction, and the boosts pick the passage. A
    boost that holds every movable item of a group in the order a base ranking already
    gives them tells nothing new about that group, so it is left out there (``_informative``).
    """
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    fused_base = reciprocal_rank_fusion(base, weights=weights, k=k)
    head = [item for item, _, _ in fused_base[:depth]]
    movable = [item for item in head if item not in keep]
    allowed = set(movable)
    kept = {name: [item for item in ranking if item in allowed] for name, ranking in boosts.items()
            if weights.get(name, 1.0) > 0}
    if group is not None:
        kept = {name: _informative(ranking, movable, base, group) for name, ranking in kept.items()}
    kept = {name: ranking for name, ranking in kept.items() if ranking}
    if not kept:
        return fused_base
    boosted = reciprocal_rank_fusion({**base, **kept}, weights=weights, k=k)
    entry = {item: (item, score, sources) for item, score, sources in boosted}
    order = [item for item, _, _ in boosted if item in allowed]  # the movable head, best boosted first
    if group is None:
        places = iter(order)
        head_entries = [entry[item if item in keep else next(places)] for item in head]
    else:
        queues: dict[Hashable, list] = {}
        for item in reversed(order):  # pop() takes the best first
            queues.setdefault(group(item), []).append(item)
        head_entries = [entry[item if item in keep else queues[group(item)].pop()] for item in head]
    return head_entries + [entry[item] for item, _, _ in fused_base[depth:]]


def _informative(ranking: Sequence[Hashable], movable: Sequence[Hashable], base: Mapping[str, Sequence[Hashable]],
                 group: Callable[[Hashable], Hashable]) -> list[Hashable]:
    """``ranking``'s items in the groups where it says something a base ranking does not.

    A boost that holds only some of a group's movable items says which of them it favours;
    one that holds all of them in the order some base ranking gives them (an item that
    ranking lacks last, head order breaking ties) only weighs that ranking again.
    """
    members: dict[Hashable, list[Hashable]] = {}
    for item in movable:
        members.setdefault(group(item), []).append(item)
    positions = [{item: at for at, item in enumerate(ranking)} for ranking in base.values()]
    told = []
    for name, items in members.items():
        held = [item for item in ranking if group(item) == name]
        repeats = len(held) == len(items) and any(
            held == sorted(items, key=lambda item, at=at: at.get(item, len(at))) for at in positions)
        if held and not repeats:
            told.append(name)
    return [item for item in ranking if group(item) in told]


def interleave_groups(
    fused: Sequence[Fused],
    groups: Sequence[Hashable],
    *,
    quota: int,
    group: Callable[[Hashable], Hashable],
) -> list[Fused]:
    """``fused`` with the first ``quota`` items of each of ``groups`` moved to its head, in their ``fused`` order.

    Every other item follows in its ``fused`` order. So no one group fills the head of the list:
    with two groups and quota 5 the first ten places hold each group's five best items (fewer
    where a group has fewer), whatever else ``fused`` ranked between them. Quota 0 leaves ``fused``
    as it is, and so does a single group whose best items already lead.
    """
    if quota < 0:
        raise ValueError(f"quota must be >= 0, got {quota}")
    wanted = set(groups)
    members: dict[Hashable, list] = {}
    for entry in fused:
        name = group(entry[0])
        if name in wanted and len(members.setdefault(name, [])) < quota:
            members[name].append(entry)
    taken = {entry[0] for queue in members.values() for entry in queue}
    head = [entry for entry in fused if entry[0] in taken]
    return head + [entry for entry in fused if entry[0] not in taken]


def keep_within(
    fused: Sequence[Fused],
    items: Collection[Hashable],
    *,
    quota: int,
    group: Callable[[Hashable], Hashable],
) -> list[Fused]:
    """``fused`` with each of ``items`` that is not among its group's first ``quota`` moved up to the last of them.

    The moved item takes the place of its group's ``quota``-th item, which follows it; every other
    item keeps its order. Quota 0 leaves ``fused`` as it is.
    """
    if quota < 0:
        raise ValueError(f"quota must be >= 0, got {quota}")
    order = list(fused)
    for item in items:
        at = next((n for n, entry in enumerate(order) if entry[0] == item), None)
        if at is None or quota == 0:
            continue
        members = [n for n, entry in enumerate(order) if group(entry[0]) == group(item)]
        if members.index(at) >= quota:
            entry = order.pop(at)
            order.insert(members[quota - 1], entry)
    return order
