"""Stores that hold only what the link graph reads: entities, redirects and triples, written as rows.

``link_store`` writes a given set of articles and links; ``random_link_store`` a
random one (each pair linked one way or both ways), for comparing the CSR graph and
its PageRank with NetworkX on the same triples.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from pathlib import Path

import networkx as nx
from sqlalchemy.orm import sessionmaker

from kgqa.settings import Settings


def link_store(data_dir: Path, titles: Mapping[int, str], links: Iterable[tuple[int, str]], *,
               redirects: Mapping[str, str] | None = None,
               other_triples: Iterable[tuple[int, str, str, str]] = ()) -> tuple[Settings, sessionmaker]:
    """Settings on ``data_dir`` and sessions on its new SQLite store holding the rows given.

    ``titles``: entity id -> title; ``links``: (subject entity id, linked title);
    ``redirects``: redirect title -> target title; ``other_triples``: (subject id,
    predicate, object title, kind) facts that are not links.
    """
    from kg.store import Entity, Redirect, Triple, init_db, make_engine, session_factory

    settings = Settings(data_dir=data_dir, database_url="")
    settings.index_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    init_db(engine)
    sessions = session_factory(engine)
    with sessions() as session:
        session.add_all(Entity(entity_id=eid, title=title) for eid, title in titles.items())
        session.add_all(Redirect(page_id=10_000_000 + n, title=title, norm=title.lower(), target=target, rev_id=1)
                        for n, (title, target) in enumerate((redirects or {}).items()))
        session.flush()
        session.add_all(Triple(subject_id=subject, predicate="links_to", object_title=title, kind="links_to",
                               page_id=subject, rev_id=1) for subject, title in links)
        session.add_all(Triple(subject_id=subject, predicate=predicate, object_title=title, kind=kind,
                               page_id=subject, rev_id=1) for subject, predicate, title, kind in other_triples)
        session.commit()
    return settings, sessions


def random_link_store(data_dir: Path, nodes: int, pairs: int, seed: int) -> tuple[Settings, sessionmaker]:
    """``nodes`` articles ("Article 0", ...) with ``pairs`` random linked pairs, each linked one way or both ways."""
    rng = random.Random(seed)
    titles = {100 + n: f"Article {n}" for n in range(nodes)}
    links = []
    for u, v in nx.gnm_random_graph(nodes, pairs, seed=seed).edges():
        direction = rng.choice(["forward", "backward", "both"])
        if direction != "backward":
            links.append((100 + u, titles[100 + v]))
        if direction != "forward":
            links.append((100 + v, titles[100 + u]))
    return link_store(data_dir, titles, links)


def networkx_link_graph(session) -> nx.Graph:
    """The link graph as retrieval built it with NetworkX: the kg ``MultiDiGraph``'s ``links_to`` edges between
    entities, undirected, each pair weighted by the number of its links (one per direction)."""
    from kg.graph import build_graph

    knowledge_graph = build_graph(session, links=True)
    entities = {node for node, attrs in knowledge_graph.nodes(data=True) if attrs.get("kind") == "entity"}
    graph = nx.Graph()
    graph.add_nodes_from(entities)
    for source, target, attrs in knowledge_graph.edges(data=True):
        if attrs.get("kind") == "links_to" and source != target and source in entities and target in entities:
            weight = graph[source][target]["weight"] + 1 if graph.has_edge(source, target) else 1
            graph.add_edge(source, target, weight=weight)
    return graph
