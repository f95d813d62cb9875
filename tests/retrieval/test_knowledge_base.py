"""Loading the knowledge base retrieval reads, on a tiny store: catalog, BM25, linker, graph, vectors; and refusals."""

from __future__ import annotations

import numpy as np
import pytest

from kg import index_files
from kg.store import init_db, make_engine
from kgqa.errors import KnowledgeBaseMissing
from retrieval.knowledge_base import KnowledgeBase
from tests.helpers.tiny_kb import (  # noqa: F401 (fixtures)
    ALABAMA, PAGES, HashingEmbedder, build_tiny_kb, loaded_tiny_kb, tiny_kb, tiny_settings,
)

PASSAGES = sum(len(page.passages) for page in PAGES)


@pytest.fixture(scope="module")
def kb(loaded_tiny_kb):
    return loaded_tiny_kb


def test_warm_up_loads_every_component_once(kb):
    assert kb.ready and kb.embedder.ready
    parts = (kb.catalog, kb.sparse, kb.linker, kb.expander, kb.vector_index)
    kb.warm_up()
    assert (kb.catalog, kb.sparse, kb.linker, kb.expander, kb.vector_index) == parts


def test_the_catalog_knows_every_passage_by_id_vector_and_page_in_reading_order(kb):
    assert len(kb.catalog) == PASSAGES
    alabama = kb.catalog.of_title("Alabama")
    assert [(ref.passage_id, ref.page_id, ref.ordinal) for ref in alabama] == [
        ("303:1001:0:0", 303, 0), ("303:1001:1:1", 303, 1), ("303:1001:2:2", 303, 2)]
    for ref in alabama:
        assert kb.catalog.by_id[ref.passage_id] == ref == kb.catalog.by_vector[ref.vector_id]
    assert kb.catalog.of_title("Atlantis") == [] and kb.catalog.of_page(404) == []
    assert "303:9:9:9" not in kb.catalog.by_id and -1 not in kb.catalog.by_vector
    with pytest.raises(KeyError):
        kb.catalog.by_vector[10**12]
    assert sorted(kb.catalog.by_id) == sorted(kb.catalog.passage_id(at) for at in range(PASSAGES))
    positions = kb.catalog.positions_of_title("Alabama")  # the BM25 index's documents of the article
    assert [kb.catalog.passage_id(at) for at in positions] == [ref.passage_id for ref in alabama]
    assert kb.catalog.positions_of_title("Atlantis") == range(0)


def test_the_sparse_index_holds_every_passage_and_finds_one_by_its_title(kb):
    assert kb.sparse.size == PASSAGES
    data = kb.sparse._retriever.scores["data"]
    assert not isinstance(data.base, np.memmap) and not data.flags.writeable  # small: a checked copy, read-only
    keys = [key for key, _ in kb.sparse.search("Huntsville convention", 3)]
    assert keys[0] == "303:1001:2:2"
    # the title is indexed with the text: Einstein's Nobel passage never says "Albert"
    assert {key for key, _ in kb.sparse.search("Albert", 10)} == {"736:5001:0:0", "736:5001:1:1"}


def test_the_linker_knows_titles_bold_names_disambiguated_titles_and_redirects(kb):
    def linked(question):
        return [(e.title, e.alias, e.mention) for e in kb.linker.link(question)]

    assert linked("Who wrote Animal Farm?") == [("Animal Farm", "Animal Farm", "Animal Farm")]
    assert linked("Where was Eric Blair born?") == [("George Orwell", "Eric Blair", "Eric Blair")]
    assert linked("What did Eric Arthur Blair write?") == [("George Orwell", "Eric Arthur Blair", "Eric Arthur Blair")]
    assert linked("When was Montgomery founded?") == [("Montgomery, Alabama", "Montgomery", "Montgomery")]
    assert linked("Is Einstein older than AnimalFarm?") == [("Albert Einstein", "Einstein", "Einstein"),
                                                              ("Animal Farm", "AnimalFarm", "AnimalFarm")]
    assert linked("Where is the Lost Continent?") == []  # its redirect points at a page the KB lacks
    assert kb.linker.link("Who wrote Animal Farm?")[0].url == "https://en.wikipedia.org/wiki/Animal_Farm"


def test_the_graph_expander_walks_the_links_between_ingested_articles(kb):
    ranked = dict(kb.expander.expand(["Alabama"]))
    assert set(ranked) == {"Alabama", "Montgomery, Alabama"}  # the Gulf of Mexico is not ingested
    assert ranked["Alabama"] > ranked["Montgomery, Alabama"] > 0
    assert [title for title, _ in kb.expander.expand(["George Orwell"])] == ["George Orwell", "Animal Farm"]
    assert kb.expander.expand(["Albert Einstein"]) == [("Albert Einstein", 1.0)]  # no links either way


def test_the_vector_index_holds_one_vector_per_passage(kb):
    assert sorted(kb.vector_index.ids().tolist()) == sorted(kb.catalog.by_vector)
    assert kb.vector_index.dim == HashingEmbedder.dim


def test_the_link_graph_is_built_in_memory_when_the_index_folder_cannot_hold_it(tmp_path, kb):
    settings = build_tiny_kb(tmp_path / "data")
    (settings.index_dir / "links.lock").mkdir()  # no lock file can be made, so no graph can be saved
    in_memory = KnowledgeBase(settings, embedder=HashingEmbedder())
    in_memory.warm_up()
    assert not (settings.index_dir / "links").exists()
    for page in PAGES:
        assert in_memory.expander.expand([page.title]) == kb.expander.expand([page.title])


def test_without_a_vector_index_dense_retrieval_is_off_and_the_rest_loads(tmp_path):
    settings = build_tiny_kb(tmp_path / "data")
    settings.faiss_path.unlink()
    index_files.stamp(settings.index_dir)  # a knowledge base stamped without one
    kb = KnowledgeBase(settings, embedder=HashingEmbedder())
    kb.warm_up()
    assert kb.vector_index is None
    assert len(kb.catalog) == PASSAGES and kb.linker.link("Tell me about Alabama")[0].title == ALABAMA.title


def test_a_missing_data_folder_is_refused_and_left_alone(tmp_path):
    settings = tiny_settings(tmp_path / "data")
    kb = KnowledgeBase(settings, embedder=HashingEmbedder())
    with pytest.raises(KnowledgeBaseMissing, match="kgqa ingest"):
        kb.warm_up()
    assert not kb.ready and not (tmp_path / "data").exists()


@pytest.mark.parametrize("tables", [False, True], ids=["database-without-tables", "store-without-passages"])
def test_an_empty_store_is_refused(tmp_path, tables):
    settings = tiny_settings(tmp_path / "data")
    settings.data_dir.mkdir(parents=True)
    engine = make_engine(settings.database_url)
    if tables:
        init_db(engine)
    else:
        with engine.connect() as connection:  # a SQLite file that holds something else
            connection.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY)")
            connection.commit()
    engine.dispose()
    with pytest.raises(KnowledgeBaseMissing, match="kgqa ingest"):
        KnowledgeBase(settings, embedder=HashingEmbedder()).warm_up()
