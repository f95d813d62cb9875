"""The vector index records the embedder that built it and refuses another, at ingest and at load for retrieval.

Two small deterministic embedders of different identities (and widths) fill the
real ``VectorIndex`` through the real ingest pipeline over a tiny hand-written dump.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from kg import index_files
from kg.ingest import ingest_dump
from kg.stats import kb_stats
from kg.store import IngestRun, Passage, make_engine, session_factory
from kg.vector_index import VectorIndex, embedder_record_path
from kg.vectors import PassageVectors
from kgqa.errors import EmbedderMismatch
from kgqa.settings import Settings
from models.embedding.embedder import document_text
from models.embedding.identity import EmbedderIdentity
from retrieval.dense import DenseRetriever
from retrieval.knowledge_base import KnowledgeBase
from tests.helpers.kg_dumps import page_xml, snapshot, write_dump


class SeededEmbedder:
    """A deterministic stand-in: each text maps to a unit vector seeded by its content and the embedder's name."""

    def __init__(self, name: str, dim: int) -> None:
        self.identity = EmbedderIdentity(name=name, dim=dim, fingerprint=hashlib.sha256(name.encode()).hexdigest())
        self.dim = dim
        self.batch_size = 1
        self.encoded = 0

    def warm_up(self) -> None:
        pass

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            seed = zlib.crc32(f"{self.identity.name}\0{text}".encode())
            vector = np.random.default_rng(seed).standard_normal(self.dim)
            vectors[row] = vector / np.linalg.norm(vector)
        self.encoded += len(texts)
        return vectors

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode_documents([text])[0]


PAGES = [
    page_xml(101, "Alpha", 1, "'''Alpha''' is the first letter of the Greek alphabet.\n\n== History ==\n"
                              "It comes from the Phoenician letter aleph, an ox head."),
    page_xml(102, "Beta", 1, "'''Beta''' is the second letter of the Greek alphabet.\n\n== Use ==\n"
                             "In physics it names a kind of radioactive decay."),
]


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    return write_dump(tmp_path / "tiny.xml", PAGES)


def settings_in(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", device="cpu")


def test_ingest_records_the_embedder_and_a_second_embedder_is_refused(tmp_path, dump):
    settings = settings_in(tmp_path)
    mini, other = SeededEmbedder("mini", 384), SeededEmbedder("other", 384)
    summary = ingest_dump(settings, dump, progress=False, workers=1, embedder=mini)
    assert summary.pages == 2 and summary.passages >= 2
    record = json.loads(embedder_record_path(settings.faiss_path).read_text())
    assert record == {"name": "mini", "dim": 384, "fingerprint": mini.identity.fingerprint}
    assert VectorIndex.load(settings.faiss_path).embedder == mini.identity
    stats = kb_stats(settings)
    assert stats["embedder"] == f"mini (384-d, fingerprint {mini.identity.fingerprint[:12]})"
    assert stats["embedder_fingerprint"] == mini.identity.fingerprint

    before = snapshot(settings)
    with pytest.raises(EmbedderMismatch) as refused:
        ingest_dump(settings, dump, progress=False, workers=1, embedder=other)
    message = str(refused.value)
    assert "\n" not in message and "the index index/passages.faiss was built" in message  # its place in the data folder
    assert str(mini.identity) in message and str(other.identity) in message and "re-ingest" in message
    assert other.encoded == 0 and snapshot(settings) == before
    engine = make_engine(settings.database_url)
    with session_factory(engine)() as session:
        assert session.query(IngestRun).count() == 1  # the refused run recorded nothing
    engine.dispose()

    summary = ingest_dump(settings, dump, progress=False, workers=1, embedder=mini)  # the same embedder goes on
    assert summary.unchanged == 2 and snapshot(settings) == before


def test_retrieval_refuses_an_index_of_another_embedder(tmp_path, dump):
    settings = settings_in(tmp_path)
    mini = SeededEmbedder("mini", 384)
    ingest_dump(settings, dump, progress=False, workers=1, embedder=mini)

    kb = KnowledgeBase(settings, embedder=mini)
    kb.warm_up()
    assert kb.vector_index.embedder == mini.identity
    assert sorted(kb.vector_index.ids().tolist()) == snapshot(settings)["vector_ids"]

    for stranger in (SeededEmbedder("other", 384), SeededEmbedder("wide", 768)):
        with pytest.raises(EmbedderMismatch, match=r"was built with mini \(384-d"):
            KnowledgeBase(settings, embedder=stranger).warm_up()


def test_an_embedder_of_another_width_builds_its_own_index(tmp_path, dump):
    settings = settings_in(tmp_path)
    wide = SeededEmbedder("wide", 768)
    ingest_dump(settings, dump, progress=False, workers=1, embedder=wide)
    index = VectorIndex.load(settings.faiss_path, embedder=wide.identity)
    assert index.dim == 768 and index.embedder == wide.identity

    kb = KnowledgeBase(settings, embedder=wide)
    kb.warm_up()
    with kb.session() as session:
        passages = session.execute(select(Passage.vector_id, Passage.title, Passage.section, Passage.text)).all()
    assert len(passages) == kb.vector_index.ntotal >= 2
    for vector_id, title, section, text in passages:  # each passage's own text finds its vector
        dense = DenseRetriever(wide, kb.vector_index)
        [(found, cosine)] = dense.search(dense.encode(document_text(title, section, text)), 1)
        assert found == vector_id and cosine == pytest.approx(1.0, abs=1e-5)


def test_an_index_saved_before_records_is_accepted_and_recorded_at_the_next_save(tmp_path, dump, caplog):
    settings = settings_in(tmp_path)
    mini = SeededEmbedder("mini", 384)
    ingest_dump(settings, dump, progress=False, workers=1, embedder=mini)
    embedder_record_path(settings.faiss_path).unlink()  # as an index saved before this record existed
    index_files.stamp(settings.index_dir)  # (and before the manifest listed one)
    assert VectorIndex.load(settings.faiss_path).embedder is None
    assert kb_stats(settings)["embedder"].startswith("not recorded (384-d")

    with pytest.raises(EmbedderMismatch, match="holds 384-d vectors of an unrecorded embedder"):
        KnowledgeBase(settings, embedder=SeededEmbedder("wide", 768)).warm_up()

    mini = SeededEmbedder("mini", 384)  # the same identity, nothing encoded yet
    engine = make_engine(settings.database_url)
    vectors = PassageVectors(settings, mini, session_factory(engine))
    with caplog.at_level(logging.WARNING, logger="kg.vector_index"):
        repaired = vectors.reconcile()
    engine.dispose()
    assert repaired == {"orphans": 0, "stale": 0, "missing": 0, "embedded": 0} and mini.encoded == 0
    assert "records no embedder" in caplog.text and "recorded at its next save" in caplog.text
    assert VectorIndex.load(settings.faiss_path).embedder == mini.identity

    with pytest.raises(EmbedderMismatch):
        ingest_dump(settings, dump, progress=False, workers=1, embedder=SeededEmbedder("other", 384))


def test_ingest_command_refuses_with_one_line_and_exit_code_2(tmp_path, dump):
    """The real embedder's identity (bundled model, not loaded) against an index another embedder built."""
    from app.cli import main

    settings = settings_in(tmp_path)
    ingest_dump(settings, dump, progress=False, workers=1, embedder=SeededEmbedder("mini", 384))
    env = {"KGQA_DATA_DIR": str(settings.data_dir), "KGQA_DEVICE": "cpu", "KGQA_EMBEDDER_PATH": ""}
    result = CliRunner().invoke(main, ["ingest", str(dump), "--no-progress", "--workers", "1"], env=env)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("kgqa: the index ") and "all-MiniLM-L6-v2 (384-d, fingerprint" in lines[-1]
    assert "was built with mini (384-d" in lines[-1]


def test_record_and_index_must_agree(tmp_path):
    mini = SeededEmbedder("mini", 8)
    with pytest.raises(ValueError, match="a 16-d index cannot hold"):
        VectorIndex.create(16, embedder=mini.identity)
    path = VectorIndex.create(8, embedder=mini.identity).save(tmp_path / "passages.faiss")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["passages.faiss", "passages.faiss.json"]
    embedder_record_path(path).write_text(json.dumps({"name": "mini", "dim": 9, "fingerprint": "0" * 64}))
    with pytest.raises(ValueError, match="says 9-d, the index holds 8-d"):
        VectorIndex.load(path)
    embedder_record_path(path).write_text("{}")
    with pytest.raises(ValueError, match="not an embedder record"):
        VectorIndex.load(path)
