"""Graph expansion: Personalized PageRank from the linked entities over the article link graph.

In the spirit of HippoRAG, the question's entities seed a random walk with
restart; entities a few links away that many paths reach score high, and their
passages get a boost for multi-hop questions. The walk runs on a bounded
neighbourhood of the seeds so its cost does not grow with the whole graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def link_graph_from(knowledge_graph) -> "networkx.Graph":  # noqa: F821 - typing only
    """The undirected entity-to-entity ``links_to`` graph of a kg MultiDiGraph.

    Direction is dropped: a link either way is evidence the two articles are related.
    Links to pages that were not ingested are kept out, since they have no passages.
    """
    import networkx as nx

    graph = nx.Graph()
    entity_nodes = {n for n, attrs in knowledge_graph.nodes(data=True) if attrs.get("kind") == "entity"}
    graph.add_nodes_from(entity_nodes)
    for source, target, attrs in knowledge_graph.edges(data=True):
        if attrs.get("kind") != "links_to" or source == target:
            continue
        if source in entity_nodes and target in entity_nodes:
            weight = graph[source][target]["weight"] + 1 if graph.has_edge(source, target) else 1
            graph.add_edge(source, target, weight=weight)
    return graph


class GraphExpander:
    """Personalized PageRank over a bounded neighbourhood of the seed entities."""

    def __init__(self, link_graph, *, alpha: float = 0.5, max_nodes: int = 200):
        # alpha is the continue probability; 0.5 (as in HippoRAG) keeps the walk close to the seeds.
        self._graph = link_graph
        self.alpha = alpha
        self.max_nodes = max_nodes

    def neighbourhood(self, seeds: Sequence[str]) -> set[str]:
        """Seeds, their neighbours, then second-hop nodes while the bound allows (heaviest links first)."""
        nodes = {s for s in seeds if s in self._graph}
        frontier = list(nodes)
        for _hop in range(2):
            next_frontier: list[str] = []
            for node in frontier:
                neighbours = sorted(
                    self._graph[node].items(), key=lambda item: (-item[1].get("weight", 1), item[0])
                )
                for neighbour, _attrs in neighbours:
                    if len(nodes) >= self.max_nodes:
                        return nodes
                    if neighbour not in nodes:
                        nodes.add(neighbour)
                        next_frontier.append(neighbour)
            frontier = next_frontier
        return nodes

    def expand(self, seeds: Iterable[str], *, top: int = 20) -> list[tuple[str, float]]:
        """Entities ranked by PPR from ``seeds`` (seeds included), best first."""
        import networkx as nx

        seeds = [s for s in dict.fromkeys(seeds) if s in self._graph]
        if not seeds:
            return []
        sub = self._graph.subgraph(self.neighbourhood(seeds))
        if sub.number_of_edges() == 0:
            return [(s, 1.0 / len(seeds)) for s in seeds][:top]
        personalization = {node: (1.0 if node in seeds else 0.0) for node in sub}
        scores = nx.pagerank(sub, alpha=self.alpha, personalization=personalization, weight="weight", tol=1e-8)
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        return ranked[:top]
