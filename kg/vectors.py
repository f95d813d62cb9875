"""Keep the FAISS passage index consistent with the SQL store, across crashes.

Invariant: a passage flagged ``embedded`` has its vector in the saved index. The
pipeline commits passages unflagged, embeds and adds them in memory, and only
after an atomic save of the index flags them. ``reconcile`` repairs whatever a
killed run left: it drops orphan vectors, re-embeds unflagged passages and
unflags passages whose vector is missing.

Progress is kept as it goes, in ingest and repair alike: passages are embedded
``EMBED_CHUNK`` at a time and the index is checkpointed (saved, then the passages
flagged) every few seconds, so a run killed at any point loses at most the last
few seconds of embedding. A passage's vector depends on its text alone (see
``models.embedding.embedder``), so vectors re-embedded by a repair are the very
bits a clean run would have stored.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from kg import index_files
from kg.store import Passage
from kgqa.settings import Settings

if TYPE_CHECKING:
    from models.embedding.embedder import PassageEncoder

log = logging.getLogger(__name__)

CHECKPOINT_SECONDS = 5.0  # the most embedding a killed run loses, while saving the index is cheap
SAVE_COST_SHARE = 0.1  # a large index saves only once the embedding since the last save took 10x its save time
EMBED_CHUNK = 64  # passages per encoder call; a checkpoint may follow each chunk
PAUSE_ENV = "KGQA_INGEST_PAUSE_AT"  # test only: see ``pause_point``
_points_reached: Counter[str] = Counter()


def pause_point(name: str) -> None:
    """A test-only window into a run's crash points (parse, SQL write, embedding, index save, ...).

    With ``KGQA_INGEST_PAUSE_AT`` set, each point reached is reported on stderr, so a test
    knows where a kill landed; set to ``<name>:<n>``, the run stops the n-th time it
    reaches ``name`` and waits there to be killed. Unset (always, outside tests), it
    does nothing.
    """
    wanted = os.environ.get(PAUSE_ENV)
    if not wanted:
        return
    _points_reached[name] += 1
    print(f"ingest point {name} {_points_reached[name]}", file=sys.stderr, flush=True)
    if wanted == f"{name}:{_points_reached[name]}":
        print(f"ingest paused at {name}", file=sys.stderr, flush=True)
        while True:
            time.sleep(60)


class PassageVectors:
    """The index being written by one ingest run, with the embedder that fills it."""

    def __init__(self, settings: Settings, embedder: PassageEncoder, sessions: sessionmaker) -> None:
        self.settings = settings
        self.embedder = embedder
        self.sessions = sessions
        self.index = None
        self.unsaved: list[int] = []  # in the in-memory index, not yet saved nor flagged
        self.last_save = time.monotonic()
        self.save_seconds = 0.0  # how long the last save took
        self.dirty = False

    def warm_up(self) -> None:
        """Open the saved index (refusing one another embedder built) or start an empty one of the embedder's width."""
        from kg.vector_index import VectorIndex, embedder_record_path

        if self.index is not None:
            return
        path = self.settings.faiss_path
        identity = self.embedder.identity
        for leftover in path.parent.glob(f".{path.name}.*.tmp"):  # a save killed before its rename
            leftover.unlink(missing_ok=True)
        if path.is_file() or index_files.stamped(path.parent, path):
            try:
                self.index = VectorIndex.load(path, embedder=identity, checked=True)
                self.dirty = not embedder_record_path(path).is_file()  # an older index gets its record at the next save
                return
            except index_files.DamagedIndexFile as exc:  # reconcile re-embeds every passage into a fresh index
                log.warning("%s; rebuilding the vector index from the SQL store", exc)
        self.index = VectorIndex.create(identity.dim, embedder=identity)
        self.dirty = True

    def close(self) -> None:
        """Drop the in-memory index (after a forced checkpoint saved it); ``warm_up`` opens it again."""
        self.index = None

    def max_id(self) -> int:
        return self.index.max_id()

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
        pause_point("repair")
        embedded = self.embed_pending()
        self.checkpoint(force=True)
        return {"orphans": len(orphans), "stale": len(stale), "missing": len(missing), "embedded": embedded}

    def embed_pending(self, page_ids: list[int] | None = None) -> int:
        """Embed unflagged passages (of these pages, or all) not yet in the in-memory index, in vector id
        order, checkpointing as it goes. Used by repair; a run embeds what it wrote with ``embed``."""
        query = select(Passage.vector_id, Passage.title, Passage.section, Passage.text).where(
            Passage.embedded.is_(False)).order_by(Passage.vector_id)
        if page_ids is not None:
            query = query.where(Passage.page_id.in_(page_ids))
        pending = set(self.unsaved)
        with self.sessions() as session:
            rows = [tuple(row) for row in session.execute(query) if row[0] not in pending]
        return self.embed(rows)

    def embed(self, rows: list[tuple[int, str, str, str]]) -> int:
        """Embed committed, unflagged passages given as (vector id, title, section, text) and add them to the
        in-memory index, ``EMBED_CHUNK`` at a time, checkpointing as it goes."""
        from models.embedding.embedder import document_text

        step = max(EMBED_CHUNK, self.embedder.batch_size)  # a GPU's batch is larger than a checkpoint's chunk
        for start in range(0, len(rows), step):
            chunk = rows[start:start + step]
            vectors = self.embedder.encode_documents([document_text(t, s, x) for _, t, s, x in chunk])
            ids = np.asarray([row[0] for row in chunk], dtype=np.int64)
            self.index.add(ids, vectors)
            self.unsaved.extend(ids.tolist())
            self.dirty = True
            pause_point("embedded")
            self.checkpoint()
        return len(rows)

    def checkpoint(self, *, force: bool = False) -> None:
        """Save the index atomically, then flag what it now holds; cheap no-op when nothing changed.

        Unforced, it waits ``CHECKPOINT_SECONDS`` since the last save, or longer for an index
        so large that saving it would take more than ``SAVE_COST_SHARE`` of the run. A kill
        between the save and the flags leaves saved but unflagged vectors: ``reconcile``
        embeds those passages again.
        """
        interval = max(CHECKPOINT_SECONDS, self.save_seconds / SAVE_COST_SHARE)
        if not self.dirty or (not force and time.monotonic() - self.last_save < interval):
            return
        started = time.monotonic()
        self.index.save(self.settings.faiss_path, stamp=True)
        self.save_seconds = time.monotonic() - started
        pause_point("index-saved")
        with self.sessions() as session:
            for start in range(0, len(self.unsaved), 10_000):
                session.execute(update(Passage).where(Passage.vector_id.in_(self.unsaved[start:start + 10_000]))
                                .values(embedded=True))
            session.commit()
        self.unsaved.clear()
        self.dirty = False
        self.last_save = time.monotonic()
        pause_point("flagged")


def consistency(session: Session, index) -> dict[str, int]:
    """How far SQL and the index disagree (all zeros when consistent); used by stats and tests."""
    rows = session.execute(select(Passage.vector_id, Passage.embedded)).all()
    in_index = set(index.ids().tolist()) if index is not None else set()
    flagged = {vid for vid, emb in rows if emb}
    return {"orphan_vectors": len(in_index - {vid for vid, _ in rows}),
            "flagged_without_vector": len(flagged - in_index),
            "unembedded_passages": len(rows) - len(flagged)}
