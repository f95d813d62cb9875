import networkx as nx

from retrieval.graph_expansion import GraphExpander, link_graph_from


def small_kg() -> nx.MultiDiGraph:
    kg = nx.MultiDiGraph()
    for title in ["Animal Farm", "George Orwell", "Nineteen Eighty-Four", "Eton College", "Alabama", "Montgomery"]:
        kg.add_node(title, kind="entity")
    kg.add_node("Category:Novels", kind="category")
    kg.add_node("Not ingested", kind="missing")
    links = [("Animal Farm", "George Orwell"), ("Nineteen Eighty-Four", "George Orwell"),
             ("George Orwell", "Eton College"), ("Animal Farm", "Nineteen Eighty-Four"),
             ("Alabama", "Montgomery"), ("Animal Farm", "Not ingested")]
    for s, t in links:
        kg.add_edge(s, t, key="links_to", kind="links_to", predicate="links_to")
    kg.add_edge("Animal Farm", "Category:Novels", key="in_category", kind="in_category")
    kg.add_edge("Animal Farm", "George Orwell", key="author", kind="infobox", predicate="author")
    return kg


def test_link_graph_keeps_only_links_between_ingested_entities():
    graph = link_graph_from(small_kg())
    assert "Category:Novels" not in graph and "Not ingested" not in graph
    assert graph.has_edge("George Orwell", "Animal Farm")
    assert graph.number_of_edges() == 5


def test_ppr_ranks_the_seed_then_its_neighbours_and_never_the_unconnected():
    ranked = GraphExpander(link_graph_from(small_kg())).expand(["Animal Farm"])
    titles = [t for t, _ in ranked]
    assert titles[0] == "Animal Farm"
    assert set(titles[1:3]) == {"George Orwell", "Nineteen Eighty-Four"}
    assert titles.index("Eton College") > titles.index("George Orwell")
    assert "Alabama" not in titles and "Montgomery" not in titles
    assert abs(sum(s for _, s in ranked) - 1.0) < 1e-6


def test_neighbourhood_is_bounded_and_unknown_seeds_give_nothing():
    expander = GraphExpander(link_graph_from(small_kg()), max_nodes=2)
    assert len(expander.neighbourhood(["Animal Farm"])) == 2
    assert expander.expand(["Nowhere"]) == []
