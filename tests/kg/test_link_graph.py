"""The CSR link graph: built from SQL as NetworkX builds it from the same triples, memory-mapped, rebuilt when stale."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from kg.link_graph import (
    ARRAYS,
    LinkGraph,
    _DirectedPairs,
    build_link_graph,
    link_graph_dir,
    load_link_graph,
)
from kg import index_files
from kg.mapped_arrays import STAMP_FILE
from kg.store import Entity, Triple
from tests.helpers.link_store import link_store, networkx_link_graph, random_link_store

TITLES = {1: "Animal Farm", 2: "George Orwell", 3: "Nineteen Eighty-Four", 4: "Eton College", 5: "Alabama",
          6: "Montgomery, Alabama", 7: "Zürich"}
LINKS = [
    (1, "George Orwell"), (3, "George Orwell"), (2, "Eton College"), (1, "Nineteen Eighty-Four"),
    (2, "Animal Farm"),  # Orwell <-> Animal Farm both ways: weight 2
    (1, "Eric Blair"),  # a redirect to George Orwell: the same link once more, counted once
    (5, "Montgomery"),  # a redirect to Montgomery, Alabama
    (6, "Alabama"),
    (1, "Not ingested"), (5, "Lost Continent"),  # a missing page, a redirect to a missing page: left out
    (4, "Eton College"),  # to itself: left out
    (7, "Eton College"),
]
REDIRECTS = {"Eric Blair": "George Orwell", "Montgomery": "Montgomery, Alabama", "Lost Continent": "Atlantis"}
OTHER = [(1, "author", "George Orwell", "infobox"), (1, "in_category", "Category:1945 novels", "in_category"),
         (5, "capital", "Montgomery, Alabama", "infobox")]


@pytest.fixture
def store(tmp_path):
    return link_store(tmp_path / "data", TITLES, LINKS, redirects=REDIRECTS, other_triples=OTHER)


def as_networkx(graph: LinkGraph):
    """The CSR graph as a weighted NetworkX graph on titles."""
    import networkx as nx

    matrix = sp.csr_array((graph.weights, graph.indices, graph.indptr), shape=(len(graph), len(graph)))
    relabel = {node: graph.title(node) for node in range(len(graph))}
    return nx.relabel_nodes(nx.from_scipy_sparse_array(matrix), relabel)


def same_graph(csr: LinkGraph, reference) -> None:
    graph = as_networkx(csr)
    assert set(graph.nodes) == set(reference.nodes)
    assert {frozenset(e): w for *e, w in graph.edges(data="weight")} == \
        {frozenset(e): w for *e, w in reference.edges(data="weight")}


def test_links_between_ingested_articles_become_weighted_undirected_edges(store):
    _settings, sessions = store
    with sessions() as session:
        graph = build_link_graph(session)
        same_graph(graph, networkx_link_graph(session))
    assert graph.ids.tolist() == [eid for eid, _ in sorted(TITLES.items(), key=lambda item: item[1])]
    edges = {frozenset((graph.title(u), graph.title(int(v)))): int(w)
             for u in range(len(graph)) for v, w in zip(*graph.neighbours(u))}
    assert edges == {frozenset({"Animal Farm", "George Orwell"}): 2,
                     frozenset({"Nineteen Eighty-Four", "George Orwell"}): 1,
                     frozenset({"George Orwell", "Eton College"}): 1,
                     frozenset({"Animal Farm", "Nineteen Eighty-Four"}): 1,
                     frozenset({"Alabama", "Montgomery, Alabama"}): 2,
                     frozenset({"Zürich", "Eton College"}): 1}
    assert graph.edge_count == 6
    # CSR invariants: each row's neighbours ascending, the matrix symmetric
    for node in range(len(graph)):
        neighbours, _ = graph.neighbours(node)
        assert np.all(np.diff(neighbours) > 0)
    matrix = sp.csr_array((graph.weights, graph.indices, graph.indptr), shape=(len(graph),) * 2)
    assert (matrix != matrix.T).nnz == 0


def test_titles_and_degrees(store):
    _settings, sessions = store
    with sessions() as session:
        graph = build_link_graph(session)
        reference = networkx_link_graph(session)
    for entity_id, title in TITLES.items():
        node = graph.node(title)
        assert graph.ids[node] == entity_id and graph.title(node) == title and title in graph
        assert graph.degrees()[node] == reference.degree(title)  # unweighted, as the linker's prior reads it
    assert graph.node("Not ingested") is None and "Eric Blair" not in graph  # redirects are not nodes
    assert [graph.title(node) for node in range(len(graph))] == sorted(TITLES.values())  # nodes in title order


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_random_store_read_in_small_chunks_gives_the_networkx_graph(tmp_path, seed):
    _settings, sessions = random_link_store(tmp_path / "data", nodes=40, pairs=120, seed=seed)
    with sessions() as session:
        same_graph(build_link_graph(session, chunk_rows=7), networkx_link_graph(session))


def test_directed_pairs_fold_chunks_into_one_sorted_set():
    rng = np.random.default_rng(0)
    pairs = _DirectedPairs(50, min_fold=8)
    seen = set()
    for _chunk in range(30):
        source, target = rng.integers(0, 50, 20), rng.integers(0, 50, 20)
        pairs.add(source, target)
        seen |= set(zip(source.tolist(), target.tolist()))
    source, target = pairs.result()
    assert list(zip(source.tolist(), target.tolist())) == sorted(seen)


def test_an_empty_store_gives_an_empty_graph(tmp_path):
    settings, sessions = link_store(tmp_path / "data", {}, [])
    with sessions() as session:
        graph = load_link_graph(settings, session)
    assert len(graph) == 0 and graph.edge_count == 0 and graph.node("Alabama") is None


@pytest.mark.parametrize("copy_max_bytes", [0, 2**20], ids=["mapped", "copied"])
def test_the_saved_graph_is_read_only_mapped_when_large_and_copied_when_small(store, monkeypatch, copy_max_bytes):
    monkeypatch.setattr(index_files, "COPY_MAX_BYTES", copy_max_bytes)
    settings, sessions = store
    with sessions() as session:
        built = build_link_graph(session)
        loaded = load_link_graph(settings, session)
    folder = link_graph_dir(settings)
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{name}.npy" for name in ARRAYS] + [STAMP_FILE])
    for name in ARRAYS:
        array = getattr(loaded, name)
        assert isinstance(array.base, np.memmap) == (copy_max_bytes == 0) and not array.flags.writeable
        assert np.array_equal(array, getattr(built, name))
    with pytest.raises(ValueError):
        loaded.weights[0] = 9
    assert not list(folder.parent.glob(".links-*"))  # no temporary folder left behind


def test_a_current_graph_is_reused_and_a_stale_one_rebuilt(store, monkeypatch):
    settings, sessions = store
    with sessions() as session:
        first = load_link_graph(settings, session)
    import kg.link_graph

    def no_build(_session, **_kw):
        raise AssertionError("a current graph was rebuilt")

    with monkeypatch.context() as patched, sessions() as session:
        patched.setattr(kg.link_graph, "build_link_graph", no_build)
        assert np.array_equal(load_link_graph(settings, session).indices, first.indices)

    with sessions() as session:  # a new article linking to Alabama: the SQL stamp changes
        session.add(Entity(entity_id=8, title="Birmingham, Alabama"))
        session.flush()
        session.add(Triple(subject_id=8, predicate="links_to", object_title="Alabama", kind="links_to",
                           page_id=8, rev_id=1))
        session.commit()
    with sessions() as session:
        rebuilt = load_link_graph(settings, session)
        same_graph(rebuilt, networkx_link_graph(session))
    assert rebuilt.title(rebuilt.node("Birmingham, Alabama")) == "Birmingham, Alabama"
    assert rebuilt.degrees()[rebuilt.node("Alabama")] == 2
    assert first.node("Birmingham, Alabama") is None and len(first) == len(TITLES)  # old mapping still readable
    assert not list(link_graph_dir(settings).parent.glob(".links-*"))


def test_an_unreadable_saved_graph_is_rebuilt(store):
    settings, sessions = store
    with sessions() as session:
        load_link_graph(settings, session)
        (link_graph_dir(settings) / "indices.npy").write_bytes(b"cut short")
        graph = load_link_graph(settings, session)
        same_graph(graph, networkx_link_graph(session))


def test_an_unwritable_index_folder_gives_a_graph_in_memory(store):
    settings, sessions = store
    settings.index_dir.rmdir()
    settings.index_dir.write_text("not a folder")
    with sessions() as session:
        graph = load_link_graph(settings, session)
        same_graph(graph, networkx_link_graph(session))
    assert not isinstance(graph.indices.base, np.memmap)
