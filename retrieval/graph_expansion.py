"""Graph expansion: Personalized PageRank from the linked entities over the article link graph.

In the spirit of HippoRAG, the question's entities seed a random walk with
restart; entities a few links away that many paths reach score high, and their
passages get a boost for multi-hop questions. The walk runs on a bounded
neighbourhood of the seeds, read from the memory-mapped CSR link graph
(kg/link_graph.py), so its cost does not grow with the whole graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp

from kg.link_graph import LinkGraph

SCORE_DECIMALS = 12  # scores equal to this many decimals tie, and ties go by title


def personalized_pagerank(adjacency: sp.csr_array, personalization: np.ndarray, *, alpha: float,
                          tol: float = 1e-8, max_iter: int = 100) -> np.ndarray:
    """PageRank with restart to ``personalization``, by power iteration, as ``networkx.pagerank`` computes it.

    ``alpha`` is the probability to follow a link; a node without links hands its mass
    to the personalization vector; iteration stops once the L1 change is below
    ``n * tol`` (after ``max_iter`` at most: with alpha < 1 the error shrinks by alpha each step).
    """
    n = adjacency.shape[0]
    out_weight = np.asarray(adjacency.sum(axis=1)).ravel()
    dangling = out_weight == 0
    inverse = np.divide(1.0, out_weight, out=np.zeros(n), where=~dangling)
    transition = (sp.diags_array(inverse) @ adjacency).tocsr()  # row-stochastic where a node has links
    restart = personalization / personalization.sum()
    scores = np.full(n, 1.0 / n)
    for _ in range(max_iter):
        previous = scores
        scores = alpha * (scores @ transition + scores[dangling].sum() * restart) + (1 - alpha) * restart
        if np.abs(scores - previous).sum() < n * tol:
            break
    return scores


class GraphExpander:
    """Personalized PageRank over a bounded neighbourhood of the seed entities."""

    def __init__(self, link_graph: LinkGraph, *, alpha: float = 0.5, max_nodes: int = 200):
        # alpha is the continue probability; 0.5 (as in HippoRAG) keeps the walk close to the seeds.
        self._graph = link_graph
        self.alpha = alpha
        self.max_nodes = max_nodes

    def neighbourhood(self, seeds: Sequence[str]) -> set[str]:
        """Seeds, their neighbours, then second-hop nodes while the bound allows (heaviest links first)."""
        return {self._graph.title(node) for node in self._neighbourhood(self._seed_nodes(seeds))}

    def linked_titles(self, title: str) -> list[str]:
        """The articles ``title`` links to or is linked from (the link graph's neighbours), by title; none outside it."""
        node = self._graph.node(title)
        if node is None:
            return []
        return [self._graph.title(int(neighbour)) for neighbour in self._graph.neighbours(node)[0]]

    def expand(self, seeds: Iterable[str], *, top: int = 20) -> list[tuple[str, float]]:
        """Entities ranked by PPR from ``seeds`` (seeds included), best first."""
        graph = self._graph
        seed_nodes = self._seed_nodes(seeds)
        if not seed_nodes:
            return []
        nodes = np.array(sorted(self._neighbourhood(seed_nodes)), dtype=np.int64)
        adjacency = graph.adjacency(nodes)
        if adjacency.nnz == 0:
            return [(graph.title(node), 1.0 / len(seed_nodes)) for node in seed_nodes][:top]
        personalization = np.isin(nodes, seed_nodes).astype(np.float64)
        scores = personalized_pagerank(adjacency, personalization, alpha=self.alpha)
        # Best first; equal scores (to rounding) by title, that is by node, so ties do not hang on summation order.
        order = np.lexsort((nodes, -np.round(scores, SCORE_DECIMALS)))[:top]
        return [(graph.title(int(nodes[i])), float(scores[i])) for i in order]

    def _seed_nodes(self, seeds: Iterable[str]) -> list[int]:
        nodes = (self._graph.node(title) for title in dict.fromkeys(seeds))
        return list(dict.fromkeys(node for node in nodes if node is not None))

    def _neighbourhood(self, seed_nodes: Sequence[int]) -> dict[int, None]:
        """The node set (insertion-ordered) of ``neighbourhood``: hop by hop, each node's heaviest links first."""
        nodes = dict.fromkeys(seed_nodes)
        frontier = list(nodes)
        for _hop in range(2):
            next_frontier: list[int] = []
            for node in frontier:
                for neighbour in self._heaviest_neighbours(node):
                    if len(nodes) >= self.max_nodes:
                        return nodes
                    if neighbour not in nodes:
                        nodes[neighbour] = None
                        next_frontier.append(neighbour)
            frontier = next_frontier
        return nodes

    def _heaviest_neighbours(self, node: int) -> list[int]:
        """``node``'s neighbours by weight, heaviest first, equal weights by title; only the first ``max_nodes``.

        No more can be needed: at most ``len(nodes)`` of them are already in the
        neighbourhood, so ``max_nodes`` of them always reach the bound. A row is in
        title order already, so a hub's are picked weight level by weight level, in O(degree).
        """
        neighbours, weights = self._graph.neighbours(node)
        if len(neighbours) <= self.max_nodes:
            return neighbours[np.argsort(-weights.astype(np.int64), kind="stable")].tolist()
        picked, wanted = [], self.max_nodes
        for level in np.flatnonzero(np.bincount(weights))[::-1]:
            at = np.flatnonzero(weights == level)[:wanted]
            picked.append(at)
            wanted -= len(at)
            if wanted == 0:
                break
        return neighbours[np.concatenate(picked)].tolist()
