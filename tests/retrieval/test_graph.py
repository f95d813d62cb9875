"""Graph expansion over the CSR link graph: the neighbourhood rule and the PageRank that NetworkX computed before."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from kg.link_graph import HUB_ROW, build_link_graph
from retrieval.graph_expansion import GraphExpander, personalized_pagerank
from tests.helpers.link_store import link_store, networkx_link_graph, random_link_store

TITLES = {1: "Animal Farm", 2: "George Orwell", 3: "Nineteen Eighty-Four", 4: "Eton College", 5: "Alabama",
          6: "Montgomery"}
LINKS = [(1, "George Orwell"), (3, "George Orwell"), (2, "Eton College"), (1, "Nineteen Eighty-Four"),
         (5, "Montgomery"), (1, "Not ingested")]


@pytest.fixture
def small_graph(tmp_path):
    _settings, sessions = link_store(tmp_path / "data", TITLES, LINKS,
                                     other_triples=[(1, "in_category", "Category:Novels", "in_category"),
                                                    (1, "author", "George Orwell", "infobox")])
    with sessions() as session:
        return build_link_graph(session)


class NetworkXExpander:
    """The expansion as it ran on a NetworkX graph: the reference the CSR expander must match.

    Seeds are walked in the order given (a set's order, before), the only change.
    """

    def __init__(self, graph: nx.Graph, *, alpha: float = 0.5, max_nodes: int = 200):
        self.graph, self.alpha, self.max_nodes = graph, alpha, max_nodes

    def neighbourhood(self, seeds):
        nodes = dict.fromkeys(s for s in seeds if s in self.graph)
        frontier = list(nodes)
        for _hop in range(2):
            next_frontier = []
            for node in frontier:
                neighbours = sorted(self.graph[node].items(), key=lambda item: (-item[1].get("weight", 1), item[0]))
                for neighbour, _attrs in neighbours:
                    if len(nodes) >= self.max_nodes:
                        return set(nodes)
                    if neighbour not in nodes:
                        nodes[neighbour] = None
                        next_frontier.append(neighbour)
            frontier = next_frontier
        return set(nodes)

    def expand(self, seeds, *, top: int = 20):
        seeds = [s for s in dict.fromkeys(seeds) if s in self.graph]
        if not seeds:
            return []
        sub = self.graph.subgraph(self.neighbourhood(seeds))
        if sub.number_of_edges() == 0:
            return [(s, 1.0 / len(seeds)) for s in seeds][:top]
        personalization = {node: (1.0 if node in seeds else 0.0) for node in sub}
        scores = nx.pagerank(sub, alpha=self.alpha, personalization=personalization, weight="weight", tol=1e-8)
        return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:top]


def test_ppr_ranks_the_seed_then_its_neighbours_and_never_the_unconnected(small_graph):
    ranked = GraphExpander(small_graph).expand(["Animal Farm"])
    titles = [t for t, _ in ranked]
    assert titles[0] == "Animal Farm"
    assert set(titles[1:3]) == {"George Orwell", "Nineteen Eighty-Four"}
    assert titles.index("Eton College") > titles.index("George Orwell")
    assert "Alabama" not in titles and "Montgomery" not in titles and "Not ingested" not in titles
    assert abs(sum(s for _, s in ranked) - 1.0) < 1e-6


def test_linked_titles_are_an_articles_neighbours_either_way(small_graph):
    expander = GraphExpander(small_graph)
    assert sorted(expander.linked_titles("George Orwell")) == ["Animal Farm", "Eton College", "Nineteen Eighty-Four"]
    assert expander.linked_titles("Alabama") == ["Montgomery"] and expander.linked_titles("Nowhere") == []


def test_neighbourhood_is_bounded_and_unknown_seeds_give_nothing(small_graph):
    expander = GraphExpander(small_graph, max_nodes=2)
    assert expander.neighbourhood(["Animal Farm"]) == {"Animal Farm", "George Orwell"}  # the heaviest link first
    assert expander.expand(["Nowhere"]) == []
    assert GraphExpander(small_graph).expand(["Alabama", "Nowhere", "Alabama"]) == \
        NetworkXExpander(nx.Graph([("Alabama", "Montgomery", {"weight": 1})])).expand(["Alabama"])


@pytest.mark.parametrize("seed", range(5))
def test_sparse_pagerank_equals_networkx_pagerank(seed):
    graph = nx.gnm_random_graph(30, 70, seed=seed)
    rng = np.random.default_rng(seed)
    graph.add_nodes_from([30, 31])  # isolated: dangling mass goes back to the personalization
    for u, v in graph.edges():
        graph[u][v]["weight"] = int(rng.integers(1, 4))
    seeds = rng.choice(32, size=3, replace=False).tolist()
    nodes = sorted(graph)
    personalization = {n: (1.0 if n in seeds else 0.0) for n in nodes}
    expected = nx.pagerank(graph, alpha=0.5, personalization=personalization, weight="weight", tol=1e-8)
    adjacency = nx.to_scipy_sparse_array(graph, nodelist=nodes, weight="weight", format="csr")
    scores = personalized_pagerank(adjacency, np.array([personalization[n] for n in nodes]), alpha=0.5)
    assert np.allclose(scores, [expected[n] for n in nodes], rtol=0, atol=1e-9)
    assert abs(scores.sum() - 1.0) < 1e-9
    assert sorted(nodes, key=lambda n: (-round(scores[n], 12), n)) == \
        sorted(nodes, key=lambda n: (-round(expected[n], 12), n))


@pytest.mark.parametrize("seed", range(4))
def test_expansion_equals_the_networkx_expansion_on_a_random_store(tmp_path, seed):
    _settings, sessions = random_link_store(tmp_path / "data", nodes=80, pairs=240, seed=seed)
    with sessions() as session:
        csr = build_link_graph(session)
        reference_graph = networkx_link_graph(session)
    rng = np.random.default_rng(seed)
    for max_nodes in (200, 25, 6):  # the whole 2-hop neighbourhood, then bounds that cut it
        expander = GraphExpander(csr, max_nodes=max_nodes)
        reference = NetworkXExpander(reference_graph, max_nodes=max_nodes)
        for _ in range(6):
            seeds = [f"Article {n}" for n in rng.choice(80, size=int(rng.integers(1, 4)), replace=False)]
            assert expander.neighbourhood(seeds) == reference.neighbourhood(seeds)
            ranked, expected = expander.expand(seeds, top=15), reference.expand(seeds, top=15)
            assert [title for title, _ in ranked] == [title for title, _ in expected]
            assert np.allclose([s for _, s in ranked], [s for _, s in expected], rtol=0, atol=1e-6)


def test_a_hub_neighbourhood_and_subgraph_match_networkx(tmp_path):
    leaves = HUB_ROW + 1000  # a row long enough to be binary-searched rather than read whole
    titles = {1: "Hub", **{10 + n: f"Leaf {n:05d}" for n in range(leaves)}}
    links = [(1, f"Leaf {n:05d}") for n in range(leaves)] + [(10 + n, "Hub") for n in range(0, leaves, 7)]
    links += [(10 + n, f"Leaf {n + 1:05d}") for n in range(0, 600, 3)]  # leaves linked among themselves
    _settings, sessions = link_store(tmp_path / "data", titles, links)
    with sessions() as session:
        csr = build_link_graph(session)
        reference = NetworkXExpander(networkx_link_graph(session), max_nodes=900)
    expander = GraphExpander(csr, max_nodes=900)
    hood = expander.neighbourhood(["Hub"])
    assert hood == reference.neighbourhood(["Hub"])
    # the leaves linked both ways weigh 2 and come first, then the others by title
    both_ways = {f"Leaf {n:05d}" for n in range(0, leaves, 7)}
    one_way = [f"Leaf {n:05d}" for n in range(leaves) if n % 7][: 900 - 1 - len(both_ways)]
    assert hood == {"Hub"} | both_ways | set(one_way)
    ranked, expected = expander.expand(["Hub"], top=50), reference.expand(["Hub"], top=50)
    assert [t for t, _ in ranked] == [t for t, _ in expected]
    assert np.allclose([s for _, s in ranked], [s for _, s in expected], rtol=0, atol=1e-6)
