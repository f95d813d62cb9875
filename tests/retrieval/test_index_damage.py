"""Every file under index/ truncated, zeroed or overwritten at its start: the load repairs it or names it, never crashes.

A damaged BM25 or link-graph file is rebuilt from SQL (one warning naming it);
a damaged FAISS index or embedder record fails the load with ``DamagedIndexFile``
naming it by its place in the data folder, until ``kgqa kg repair`` rebuilds it;
a damaged manifest is logged and its files stamped again; a damaged graph pickle
is rebuilt on its next load.
"""

from __future__ import annotations

import logging
import shutil

import pytest

from kg import index_files
from kg.graph import load_graph
from kg.index_files import DamagedIndexFile
from kg.repair import repair_index
from kg.stats import kb_stats
from retrieval.knowledge_base import KnowledgeBase
from tests.helpers.index_damage import KINDS, damage, pristine  # noqa: F401 (fixture)
from tests.helpers.tiny_kb import HashingEmbedder

REBUILT_FROM_SQL = ("bm25/", "links/")
REFUSED = ("passages.faiss", "passages.faiss.json")


def index_file_names(settings) -> list[str]:
    names = [path.relative_to(settings.index_dir).as_posix() for path in index_files.index_files(settings.index_dir)]
    return names + [index_files.MANIFEST]


def copy_of(pristine, tmp_path):
    shutil.copytree(pristine.data_dir, tmp_path / "data")
    return pristine.with_overrides(data_dir=tmp_path / "data")


def search_works(kb: KnowledgeBase) -> None:
    assert kb.sparse.search("Montgomery capital", 3)[0][0] == "303:1001:1:1"
    assert kb.linker.link("Who wrote Animal Farm?")[0].title == "Animal Farm"
    assert kb.expander is not None and len(kb.catalog.of_title("Alabama")) == 3
    scores, ids = kb.vector_index.search(HashingEmbedder.vector("Montgomery capital")[None, :], 1)
    assert int(ids[0, 0]) == kb.catalog.by_id["303:1001:1:1"].vector_id


def test_the_pristine_kb_lists_every_file_it_reads(pristine):
    names = index_file_names(pristine)
    assert {"passages.faiss", "passages.faiss.json", "graph.pickle", "bm25/stamp.json", "links/stamp.json",
            "bm25/indices.csc.index.npy", "links/indices.npy", "manifest.json"} <= set(names)
    assert len(names) == 16 + 7 + 4 and not index_files.damaged(pristine.index_dir)


@pytest.mark.parametrize("kind, copy_max_bytes", [*((kind, index_files.COPY_MAX_BYTES) for kind in KINDS),
                                                   ("random start", 0)],
                         ids=[*KINDS, "random start, every file mapped"])
def test_each_damaged_file_is_rebuilt_from_sql_or_named_at_load(pristine, tmp_path, caplog, monkeypatch, kind,
                                                                 copy_max_bytes):
    monkeypatch.setattr(index_files, "COPY_MAX_BYTES", copy_max_bytes)  # 0: checked in place, then mapped
    for at, name in enumerate(index_file_names(pristine)):
        settings = copy_of(pristine, tmp_path / f"{at}")
        damage(settings.index_dir / name, kind)
        kb = KnowledgeBase(settings, embedder=HashingEmbedder())
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            if name in REFUSED:
                with pytest.raises(DamagedIndexFile) as raised:
                    kb.warm_up()
                assert raised.value.name == f"index/{name}", name
                assert str(settings.data_dir) not in str(raised.value) and "kgqa kg repair" in str(raised.value)
                continue
            kb.warm_up()
        search_works(kb)
        logged = [r.getMessage() for r in caplog.records if f"index/{name}" in r.getMessage()]
        if name.startswith(REBUILT_FROM_SQL):
            assert len(logged) == 1 and "rebuilding it from the SQL store" in logged[0], (name, caplog.text)
            assert not index_files.damaged(settings.index_dir), name  # rebuilt and stamped again
        elif name == index_files.MANIFEST:
            assert logged and "is damaged" in logged[0]
            assert not index_files.damaged(settings.index_dir)
        else:  # the graph pickle: not read by the knowledge base, which removes it; the graph's own load rebuilds it
            assert name == "graph.pickle" and logged and "removed" in logged[0], caplog.text
            assert not settings.graph_path.exists() and not index_files.damaged(settings.index_dir)
            assert load_graph(settings).number_of_nodes() > 0 and not index_files.damaged(settings.index_dir)


@pytest.mark.parametrize("name", REFUSED)
def test_kgqa_kg_repair_rebuilds_a_damaged_vector_index_from_the_store(pristine, tmp_path, name):
    settings = copy_of(pristine, tmp_path)
    damage(settings.index_dir / name, "random start")
    embedder = HashingEmbedder()
    assert kb_stats(settings)["damaged_index_files"] == f"index/{name} (run `kgqa kg repair`)"
    report = repair_index(settings, embedder=embedder)
    assert report["damaged"] == [f"index/{name}"]
    assert report["vectors"]["embedded"] == len(pristine_passages(pristine))  # every passage embedded again
    assert not index_files.damaged(settings.index_dir) and kb_stats(settings)["damaged_index_files"] == "none"
    kb = KnowledgeBase(settings, embedder=HashingEmbedder())
    kb.warm_up()
    search_works(kb)


def pristine_passages(settings) -> list[str]:
    kb = KnowledgeBase(settings, embedder=HashingEmbedder())
    kb.warm_up()
    return list(kb.catalog.by_id)


def test_a_file_damaged_after_the_load_cannot_reach_the_loaded_knowledge_base(pristine, tmp_path):
    """Small files are read into memory: cutting one short under a running process cannot raise SIGBUS there."""
    settings = copy_of(pristine, tmp_path)
    kb = KnowledgeBase(settings, embedder=HashingEmbedder())
    kb.warm_up()
    for name in index_file_names(pristine):
        (settings.index_dir / name).open("r+b").truncate(0)  # in place: the inode a mapping would hold
    search_works(kb)


def test_a_damaged_graph_snapshot_is_rebuilt_by_the_graph_s_own_load(pristine, tmp_path, caplog):
    settings = copy_of(pristine, tmp_path)
    damage(settings.graph_path, "random start")
    with caplog.at_level(logging.WARNING, logger="kg.graph"):
        assert load_graph(settings).number_of_nodes() > 0  # never unpickled: its checksum differs
    assert "index/graph.pickle does not match the checksum" in caplog.text
    assert not index_files.damaged(settings.index_dir)


def test_a_missing_stamped_file_is_named(pristine, tmp_path):
    settings = copy_of(pristine, tmp_path)
    settings.faiss_path.unlink()
    with pytest.raises(DamagedIndexFile, match=r"^index/passages.faiss is missing"):
        KnowledgeBase(settings, embedder=HashingEmbedder()).warm_up()
    (settings.index_dir / "links" / "indices.npy").unlink()
    settings.faiss_path.write_bytes((pristine.faiss_path).read_bytes())
    kb = KnowledgeBase(settings, embedder=HashingEmbedder())
    kb.warm_up()  # the link graph is rebuilt
    search_works(kb)


SEARCH_AFTER_TRUNCATION = """
import signal, sys
from pathlib import Path
from kg import index_files
from kgqa.settings import Settings
from retrieval.knowledge_base import KnowledgeBase
from tests.helpers.tiny_kb import HashingEmbedder

index_files.COPY_MAX_BYTES = int(sys.argv[2])
settings = Settings(data_dir=Path(sys.argv[1]), database_url="")
kb = KnowledgeBase(settings, embedder=HashingEmbedder())
kb.warm_up()
for name in ("bm25/data.csc.index.npy", "bm25/indices.csc.index.npy", "links/indices.npy", "links/indptr.npy"):
    (settings.index_dir / name).open("r+b").truncate(0)  # in place, as a process outside kgqa would
print(kb.sparse.search("Montgomery capital", 3), kb.expander is not None, flush=True)
print(len(kb.linker.link("Who wrote Animal Farm?")), int(kb.expander is not None), flush=True)
"""


@pytest.mark.parametrize("copy_max_bytes, survives", [(index_files.COPY_MAX_BYTES, True), (0, False)],
                         ids=["read into memory", "memory-mapped"])
def test_a_mapped_file_cut_short_kills_the_process_and_a_copied_one_cannot(pristine, tmp_path, copy_max_bytes,
                                                                            survives):
    """Why small files are read, not mapped: the mapped case dies of SIGBUS (what a large file still risks)."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    settings = copy_of(pristine, tmp_path)
    done = subprocess.run([sys.executable, "-c", SEARCH_AFTER_TRUNCATION, str(settings.data_dir), str(copy_max_bytes)],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    if survives:
        assert done.returncode == 0, done.stderr
        assert "303:1001:1:1" in done.stdout
    else:
        assert done.returncode == -signal.SIGBUS, (done.returncode, done.stderr[-500:])
