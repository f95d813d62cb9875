"""Keep the FAISS passage index consistent with the SQL store, across crashes.

Invariant: a passage flagged ``embedded`` has its vector in the saved index. The
pipeline commits passages unflagged, embeds and adds them in memory, and only
after an atomic save of the index flags them. ``reconcile`` repairs whatever a
killed run left: it drops orphan vectors, re-embeds unflagged passages and
unflags passages whose vector is missing.
"""

from __future__ import annotations

import time

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from kg.store import Passage
from kgqa.settings import Settings

CHECKPOINT_SECONDS = 20.0  # saving a large index costs time; a killed run redoes at most this much embedding
EMBED_CHUNK = 512


class PassageVectors:
    """The index being written by one ingest run, with the embedder that fills it."""

    def __init__(self, settings: Settings, embedder, sessions: sessionmaker) -> None:
        self.settings = settings
        self.embedder = embedder
        self.sessions = sessions
        self.index = None
        self.unsaved: list[int] = []  # in the in-memory index, not yet saved nor flagged
        self.last_save = time.monotonic()
        self.dirty = False

    def warm_up(self) -> None:
        """Open the saved index (refusing one another embedder built) or start an empty one of the embedder's width."""
        from kg.vector_index import VectorIndex, embedder_record_path

        if self.index is not None:
            return
        path = self.settings.faiss_path
        identity = self.embedder.identity
        if path.is_file():
            self.index = VectorIndex.load(path, embedder=identity)
            self.dirty = not embedder_record_path(path).is_file()  # an older index gets its record at the next save
        else:
            self.index = VectorIndex.create(identity.dim, embedder=identity)
            self.dirty = True

    def max_id(self) -> int:
        ids = self.index.ids()
        return int(ids.max()) if len(ids) else -1

    def remove(self, vector_ids: list[int]) -> None:
        if vector_ids:
            self.index.remove(np.asarray(vector_ids, dtype=np.int64))
            self.dirty = True

    def reconcile(self) -> dict[str, int]:
        """Repair index/SQL drift left by a killed run; returns what was fixed."""
        self.warm_up()
        with self.sessions() as session:
            rows = session.execute(select(Passage.vector_id, Passage.embedded)).all()
            in_index = set(self.index.ids().tolist())
            known = {vid for vid, _ in rows}
            orphans = in_index - known
            stale = [vid for vid, flagged in rows if not flagged and vid in in_index]
            missing = [vid for vid, flagged in rows if flagged and vid not in in_index]
            self.remove(sorted(orphans) + stale)
            for start in range(0, len(missing), 10_000):
                session.execute(update(Passage).where(Passage.vector_id.in_(missing[start:start + 10_000]))
                                .values(embedded=False))
            session.commit()
        embedded = self.embed_pending()
        self.checkpoint(force=True)
        return {"orphans": len(orphans), "stale": len(stale), "missing": len(missing), "embedded": embedded}

    def embed_pending(self, page_ids: list[int] | None = None) -> int:
        """Embed unflagged passages (of these pages, or all) not yet in the in-memory index."""
        from models.embedding.embedder import document_text

        query = select(Passage.vector_id, Passage.title, Passage.section, Passage.text).where(
            Passage.embedded.is_(False)).order_by(Passage.vector_id)
        if page_ids is not None:
            query = query.where(Passage.page_id.in_(page_ids))
        pending = set(self.unsaved)
        with self.sessions() as session:
            rows = [row for row in session.execute(query) if row[0] not in pending]
        for start in range(0, len(rows), EMBED_CHUNK):
            chunk = rows[start:start + EMBED_CHUNK]
            vectors = self.embedder.encode_documents([document_text(t, s, x) for _, t, s, x in chunk])
            ids = np.asarray([row[0] for row in chunk], dtype=np.int64)
            self.index.add(ids, vectors)
            self.unsaved.extend(ids.tolist())
            self.dirty = True
        return len(rows)

    def checkpoint(self, *, force: bool = False) -> None:
        """Save the index atomically, then flag what it now holds; cheap no-op when nothing changed."""
        if not self.dirty or (not force and time.monotonic() - self.last_save < CHECKPOINT_SECONDS):
            return
        self.index.save(self.settings.faiss_path)
        with self.sessions() as session:
            for start in range(0, len(self.unsaved), 10_000):
                session.execute(update(Passage).where(Passage.vector_id.in_(self.unsaved[start:start + 10_000]))
                                .values(embedded=True))
            session.commit()
        self.unsaved.clear()
        self.dirty = False
        self.last_save = time.monotonic()


def consistency(session: Session, index) -> dict[str, int]:
    """How far SQL and the index disagree (all zeros when consistent); used by stats and tests."""
    rows = session.execute(select(Passage.vector_id, Passage.embedded)).all()
    in_index = set(index.ids().tolist()) if index is not None else set()
    flagged = {vid for vid, emb in rows if emb}
    return {"orphan_vectors": len(in_index - {vid for vid, _ in rows}),
            "flagged_without_vector": len(flagged - in_index),
            "unembedded_passages": len(rows) - len(flagged)}
