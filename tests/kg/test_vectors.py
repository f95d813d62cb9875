"""The FAISS index kept consistent with the SQL store: embedding what is pending, checkpoints, crash repair."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sqlalchemy import select, update

import kg.vectors
from kg.passages import PassageDraft
from kg.store import Passage
from kg.vector_index import VectorIndex
from kg.vectors import PassageVectors, consistency
from models.embedding.embedder import document_text
from tests.helpers.tiny_kb import (
    ALABAMA, PAGES, HashingEmbedder, tiny_store, write_article,  # noqa: F401 (fixture)
)

PASSAGES = sum(len(page.passages) for page in PAGES)
CONSISTENT = {"orphan_vectors": 0, "flagged_without_vector": 0, "unembedded_passages": 0}


@pytest.fixture
def store(tiny_store):
    return tiny_store


def saved_index(settings) -> VectorIndex | None:
    return VectorIndex.load(settings.faiss_path) if settings.faiss_path.is_file() else None


def drift(settings, sessions) -> dict[str, int]:
    """The consistency report of the store against the index as saved on disk."""
    with sessions() as session:
        return consistency(session, saved_index(settings))


def passages(sessions) -> list[Passage]:
    with sessions() as session:
        return list(session.scalars(select(Passage).order_by(Passage.vector_id)))


def embedded_store(settings, sessions) -> None:
    """What a finished ingest leaves: every passage's vector saved and flagged."""
    PassageVectors(settings, HashingEmbedder(), sessions).reconcile()
    assert drift(settings, sessions) == CONSISTENT


def assert_index_holds_each_passage_vector(settings, sessions) -> None:
    index = saved_index(settings)
    rows = passages(sessions)
    assert sorted(index.ids().tolist()) == [row.vector_id for row in rows]
    for row in rows:
        expected = HashingEmbedder.vector(document_text(row.title, row.section, row.text))
        np.testing.assert_allclose(index.reconstruct(row.vector_id), expected, atol=1e-6)


def test_a_first_run_embeds_every_passage_and_flags_them_only_once_saved(store):
    settings, sessions = store
    embedder = HashingEmbedder()
    vectors = PassageVectors(settings, embedder, sessions)
    vectors.warm_up()
    assert vectors.max_id() == -1
    assert vectors.embed_pending() == PASSAGES
    # in memory only: nothing saved, nothing flagged, so a crash here leaves a consistent (unembedded) store
    assert not settings.faiss_path.exists()
    assert drift(settings, sessions)["unembedded_passages"] == PASSAGES
    vectors.checkpoint(force=True)
    assert drift(settings, sessions) == CONSISTENT
    assert all(row.embedded for row in passages(sessions))
    assert vectors.max_id() == max(row.vector_id for row in passages(sessions))
    assert embedder.encoded == [document_text(r.title, r.section, r.text) for r in passages(sessions)]
    assert_index_holds_each_passage_vector(settings, sessions)


def test_only_passages_not_yet_embedded_are_embedded_and_only_those_of_the_given_pages(store):
    settings, sessions = store
    first = PassageVectors(settings, HashingEmbedder(), sessions)
    first.warm_up()
    assert first.embed_pending([ALABAMA.page_id]) == len(ALABAMA.passages)
    assert first.embed_pending([ALABAMA.page_id]) == 0  # already in the index, waiting for the checkpoint
    first.checkpoint(force=True)
    embedder = HashingEmbedder()
    later = PassageVectors(settings, embedder, sessions)
    later.warm_up()
    assert later.embed_pending() == PASSAGES - len(ALABAMA.passages)
    assert not any(text.startswith("Alabama") for text in embedder.encoded)
    later.checkpoint(force=True)
    assert drift(settings, sessions) == CONSISTENT
    assert PassageVectors(settings, HashingEmbedder(), sessions).reconcile() == {
        "orphans": 0, "stale": 0, "missing": 0, "embedded": 0}


def test_a_checkpoint_waits_for_its_interval_unless_forced_and_skips_when_nothing_changed(store, monkeypatch):
    settings, sessions = store
    vectors = PassageVectors(settings, HashingEmbedder(), sessions)
    vectors.warm_up()
    vectors.embed_pending()
    vectors.checkpoint()
    assert not settings.faiss_path.exists()  # saving a large index costs time: not before the interval
    monkeypatch.setattr(kg.vectors, "CHECKPOINT_SECONDS", 0.0)
    vectors.checkpoint()
    assert drift(settings, sessions) == CONSISTENT
    settings.faiss_path.unlink()
    vectors.checkpoint(force=True)
    assert not settings.faiss_path.exists()  # nothing changed since the last save


def test_a_newer_revision_swaps_its_vectors(store):
    settings, sessions = store
    embedded_store(settings, sessions)
    newer = dataclasses.replace(ALABAMA, rev_id=1002, passages=[
        PassageDraft(0, 0, "", "Alabama is a state in the Deep South whose capital has been Montgomery since 1846.")])
    vectors = PassageVectors(settings, HashingEmbedder(), sessions)
    vectors.warm_up()
    removed, _ = write_article(sessions, newer, index_floor=vectors.max_id() + 1)
    vectors.remove(removed)
    assert vectors.embed_pending([ALABAMA.page_id]) == 1
    vectors.checkpoint(force=True)
    assert drift(settings, sessions) == CONSISTENT
    assert_index_holds_each_passage_vector(settings, sessions)
    assert not set(removed) & set(saved_index(settings).ids().tolist())


def test_vectors_of_passages_the_store_no_longer_holds_are_removed(store):
    settings, sessions = store
    embedded_store(settings, sessions)
    # a run committed a newer revision, then was killed before it swapped the page's vectors
    newer = dataclasses.replace(ALABAMA, rev_id=1002, passages=ALABAMA.passages[:1])
    write_article(sessions, newer, index_floor=int(saved_index(settings).ids().max()) + 1)
    assert drift(settings, sessions) == {"orphan_vectors": 3, "flagged_without_vector": 0, "unembedded_passages": 1}
    assert PassageVectors(settings, HashingEmbedder(), sessions).reconcile() == {
        "orphans": 3, "stale": 0, "missing": 0, "embedded": 1}
    assert drift(settings, sessions) == CONSISTENT
    assert_index_holds_each_passage_vector(settings, sessions)


def test_vectors_saved_but_never_flagged_are_embedded_again(store):
    settings, sessions = store
    killed = PassageVectors(settings, HashingEmbedder(), sessions)
    killed.warm_up()
    killed.embed_pending()
    killed.index.save(settings.faiss_path)  # the checkpoint saved the index, then the run died before flagging
    assert drift(settings, sessions) == {"orphan_vectors": 0, "flagged_without_vector": 0,
                                         "unembedded_passages": PASSAGES}
    embedder = HashingEmbedder()
    assert PassageVectors(settings, embedder, sessions).reconcile() == {
        "orphans": 0, "stale": PASSAGES, "missing": 0, "embedded": PASSAGES}
    assert len(embedder.encoded) == PASSAGES
    assert drift(settings, sessions) == CONSISTENT
    assert_index_holds_each_passage_vector(settings, sessions)


def test_flagged_passages_whose_vectors_are_missing_are_embedded_again(store):
    settings, sessions = store
    embedded_store(settings, sessions)
    alabama = [row.vector_id for row in passages(sessions) if row.page_id == ALABAMA.page_id]
    index = saved_index(settings)
    index.remove(np.asarray(alabama, dtype=np.int64))  # an older copy of the index, without Alabama's vectors
    index.save(settings.faiss_path, stamp=True)
    assert drift(settings, sessions) == {"orphan_vectors": 0, "flagged_without_vector": len(alabama),
                                         "unembedded_passages": 0}
    embedder = HashingEmbedder()
    assert PassageVectors(settings, embedder, sessions).reconcile() == {
        "orphans": 0, "stale": 0, "missing": len(alabama), "embedded": len(alabama)}
    assert all(text.startswith("Alabama") for text in embedder.encoded) and len(embedder.encoded) == len(alabama)
    assert drift(settings, sessions) == CONSISTENT
    assert_index_holds_each_passage_vector(settings, sessions)


def test_a_lost_index_file_is_rebuilt_from_the_store(store):
    settings, sessions = store
    embedded_store(settings, sessions)
    settings.faiss_path.unlink()
    assert drift(settings, sessions)["flagged_without_vector"] == PASSAGES
    assert PassageVectors(settings, HashingEmbedder(), sessions).reconcile() == {
        "orphans": 0, "stale": 0, "missing": PASSAGES, "embedded": PASSAGES}
    assert drift(settings, sessions) == CONSISTENT
    assert_index_holds_each_passage_vector(settings, sessions)


def test_consistency_counts_each_kind_of_drift_at_once(store):
    _, sessions = store
    rows = passages(sessions)
    index = VectorIndex.create(HashingEmbedder.dim)
    in_index = [row.vector_id for row in rows[:4]] + [900, 901]  # four passages and two orphans
    index.add(np.asarray(in_index, dtype=np.int64), HashingEmbedder().encode_documents(["x"] * len(in_index)))
    flagged = [row.vector_id for row in rows[2:7]]  # two of them in the index, three not
    with sessions() as session:
        session.execute(update(Passage).where(Passage.vector_id.in_(flagged)).values(embedded=True))
        session.commit()
        assert consistency(session, index) == {"orphan_vectors": 2, "flagged_without_vector": 3,
                                               "unembedded_passages": PASSAGES - 5}
        assert consistency(session, None) == {"orphan_vectors": 0, "flagged_without_vector": 5,
                                              "unembedded_passages": PASSAGES - 5}
