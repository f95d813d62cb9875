"""A run SIGKILLed again and again, then finished, leaves the very knowledge base a clean run builds.

The slow test kills a real `kgqa ingest` of a subset of the sample dump ten times, at
pause points spread over parsing, the SQL write, embedding and the index save
(``KGQA_INGEST_PAUSE_AT``) and at seeded random moments, reruns it after each kill, and
compares the result with a clean run that embeds in other chunks: the same SQL rows and,
per passage id, the same vector bits.
The fast test checks on a tiny store that a repair keeps what it embedded when it dies.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

import kg.vectors
from kg.store import (
    Alias,
    Entity,
    Page,
    Passage,
    Redirect,
    Triple,
    make_engine,
    session_factory,
)
from kg.vector_index import VectorIndex
from kg.vectors import PAUSE_ENV, PassageVectors, consistency
from kgqa.settings import Settings
from tests.helpers.tiny_kb import (
    HashingEmbedder,
    open_store,
    tiny_settings,
    write_tiny_kb,
)

SUBSET = 80  # pages of the sample: 16 articles (487 passages) and 64 redirects, three SQL batches
KILLS = 10
SEED = 20240611
# The first runs stop at these points to be killed, each leaving work the next one reaches:
# a batch parsed but not written, written but not committed, committed but not embedded,
# embedded in memory only, saved in the index but not flagged, flagged. The kills after
# them come at random moments.
PAUSES = ["parsed:1", "sql-written:1", "sql-committed:1", "embedded:1", "index-saved:1", "flagged:1"]
# A random kill waits for a random number of the run's own points (1 to 5: within the work of
# its first batch), then a random delay, so it lands in real work however fast the machine is
# (a wall-clock moment missed every run on an idle machine, where a rerun finishes in seconds).
RANDOM_POINTS = (1, 5)
RANDOM_DELAY_S = (0.0, 0.5)
RUN_TIMEOUT_S = 180


def _kb_rows(settings: Settings) -> dict[str, list[tuple]]:
    """Every row a run leaves, sorted, without the ids that legitimately differ between runs
    (autoincrement row ids; vector ids, which are compared through the vectors instead)."""
    columns = {
        "pages": (Page.page_id, Page.title, Page.rev_id, Page.timestamp, Page.is_disambiguation, Page.url),
        "passages": (Passage.id, Passage.page_id, Passage.rev_id, Passage.title, Passage.section,
                     Passage.ordinal, Passage.text, Passage.embedded),
        "entities": (Entity.entity_id, Entity.title, Entity.is_disambiguation),
        "aliases": (Alias.norm, Alias.alias, Alias.entity_id, Alias.source),
        "redirects": (Redirect.page_id, Redirect.title, Redirect.norm, Redirect.target, Redirect.rev_id),
        "triples": (Triple.subject_id, Triple.predicate, Triple.object_title, Triple.object_literal, Triple.kind,
                    Triple.page_id, Triple.rev_id, Triple.field, Triple.passage_id),
    }
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            return {table: sorted(tuple(row) for row in session.execute(select(*cols)).all())
                    for table, cols in columns.items()}
    finally:
        engine.dispose()


def _vectors_by_passage(settings: Settings) -> dict[str, np.ndarray]:
    """Each passage's saved vector, keyed by passage id; the index must hold exactly the passages' vectors."""
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            ids = dict(session.execute(select(Passage.id, Passage.vector_id)).all())
            index = VectorIndex.load(settings.faiss_path)
            assert consistency(session, index) == {"orphan_vectors": 0, "flagged_without_vector": 0,
                                                   "unembedded_passages": 0}
    finally:
        engine.dispose()
    assert sorted(index.ids().tolist()) == sorted(ids.values())
    return {passage_id: index.reconstruct(vector_id) for passage_id, vector_id in ids.items()}


def _embedded_count(db: Path) -> int:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute("SELECT count(*) FROM passages WHERE embedded").fetchone()[0]


class KilledRuns:
    """Starts `kgqa ingest` runs of one dump into one data folder, and kills them."""

    def __init__(self, settings: Settings, dump: Path, lm_path: str, logs: Path) -> None:
        self.settings, self.logs = settings, logs
        self.command = [sys.executable, "-m", "app.cli", "ingest", str(dump), "--limit", str(SUBSET),
                        "--no-progress", "--workers", "1"]
        self.env = {**os.environ, "KGQA_DATA_DIR": str(settings.data_dir), "KGQA_LM_PATH": lm_path}
        self.runs = 0

    def start(self, pause: str) -> tuple[subprocess.Popen, Path]:
        """A run reporting its points on stderr; ``pause`` names where it stops ("trace": nowhere)."""
        self.runs += 1
        log = self.logs / f"run{self.runs}.stderr"
        with open(log, "w") as stderr:  # the child holds its own copy of the file
            process = subprocess.Popen(self.command, env={**self.env, PAUSE_ENV: pause}, stdout=subprocess.DEVNULL,
                                       stderr=stderr, start_new_session=True)
        return process, log

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL the run, then whatever it started (its parsing workers) so nothing outlives it."""
        process.send_signal(signal.SIGKILL)
        process.wait()
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def paused_and_killed(self, pause: str) -> str | None:
        """Run until it pauses at ``pause``, then kill it; None when it finished without reaching it."""
        process, log = self.start(pause)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while "ingest paused at" not in log.read_text():
            if process.poll() is not None:
                assert process.returncode == 0, log.read_text()[-2000:]
                return None
            assert time.monotonic() < deadline, f"the run never reached {pause}"
            time.sleep(0.05)
        self.kill(process)
        return pause

    def killed_at_random(self, rng: random.Random) -> str | None:
        """Run past a random number of its points plus a random delay, then kill it; the last point it
        passed, or None when it finished first."""
        wanted, delay_s = rng.randint(*RANDOM_POINTS), rng.uniform(*RANDOM_DELAY_S)
        process, log = self.start("trace")
        deadline = time.monotonic() + RUN_TIMEOUT_S

        def points() -> list[str]:
            return [line.split()[2] for line in log.read_text().splitlines() if line.startswith("ingest point ")]

        while len(points()) < wanted:
            if process.poll() is not None:
                assert process.returncode == 0, log.read_text()[-2000:]
                return None
            assert time.monotonic() < deadline, "the run never reached its points"
            time.sleep(0.02)
        try:
            process.wait(timeout=delay_s)
        except subprocess.TimeoutExpired:
            self.kill(process)
            return f"{points()[-1]} +{delay_s:.1f}s"
        assert process.returncode == 0, log.read_text()[-2000:]
        return None

    def finish(self) -> None:
        process, log = self.start("trace")
        assert process.wait(timeout=RUN_TIMEOUT_S) == 0, log.read_text()[-2000:]


@pytest.mark.slow
def test_ten_kills_and_reruns_end_in_the_clean_run_bit_for_bit(tmp_path, sample_kb, sample_dump, lm_path,
                                                              monkeypatch):
    from kg.ingest import ingest_dump
    from models.embedding.embedder import Embedder

    def fresh(name: str) -> Settings:  # an empty data folder reusing the prepared embedder export
        settings = sample_kb.with_overrides(data_dir=tmp_path / name)
        settings.data_dir.mkdir()
        (settings.data_dir / "models").symlink_to(sample_kb.models_dir.resolve(), target_is_directory=True)
        return settings

    killed = fresh("killed")
    runs = KilledRuns(killed, sample_dump, lm_path, tmp_path)
    rng = random.Random(SEED)
    pauses = iter(PAUSES)
    landed: list[str] = []
    while len(landed) < KILLS:
        assert runs.runs < 3 * KILLS, f"only {len(landed)} kills landed in {runs.runs} runs: {landed}"
        pause = next(pauses, None)
        if pause is None:  # a run that finishes before its moment comes is simply a finished run
            point = runs.killed_at_random(rng)
        elif pause == "flagged:1":  # a run that dies right after a checkpoint keeps what it embedded
            before = _embedded_count(killed.data_dir / "kgqa.db")
            point = runs.paused_and_killed(pause)
            assert point is None or _embedded_count(killed.data_dir / "kgqa.db") > before
        else:
            point = runs.paused_and_killed(pause)
        if point is not None:
            landed.append(point)
    runs.finish()
    print(f"\n{len(landed)} kills in {runs.runs} runs, at: {', '.join(landed)}")
    for phase in ("parsed", "sql-written", "sql-committed", "embedded", "index-saved"):
        assert any(point.startswith(phase) for point in landed), (phase, landed)
    assert sum(" +" in point for point in landed) >= KILLS - len(PAUSES)  # real random-moment kills

    clean = fresh("clean")
    # Repairs mostly re-embed whole chunks of the batch a kill interrupted, the chunks a clean run
    # embeds; the clean run here embeds a few passages at a time instead, so a vector that
    # depended on its neighbours would differ however the kills fell.
    monkeypatch.setattr(kg.vectors, "EMBED_CHUNK", 7)
    ingest_dump(clean, sample_dump, limit=SUBSET, progress=False, workers=1, embedder=Embedder(clean))

    killed_rows, clean_rows = _kb_rows(killed), _kb_rows(clean)
    assert clean_rows["passages"] and clean_rows["triples"] and clean_rows["redirects"]
    for table, rows in clean_rows.items():
        assert killed_rows[table] == rows, table
    killed_vectors, clean_vectors = _vectors_by_passage(killed), _vectors_by_passage(clean)
    assert killed_vectors.keys() == clean_vectors.keys()
    differing = [pid for pid, vector in clean_vectors.items() if not np.array_equal(killed_vectors[pid], vector)]
    assert not differing, f"{len(differing)} of {len(clean_vectors)} vectors differ, e.g. {differing[:3]}"


class DyingEmbedder(HashingEmbedder):
    """Encodes ``calls`` chunks, then dies as a killed process would: nothing after it runs."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.calls = calls

    def encode_documents(self, texts):
        if self.calls == 0:
            raise KeyboardInterrupt("killed")
        self.calls -= 1
        return super().encode_documents(texts)


def test_a_repair_killed_midway_keeps_the_chunks_it_checkpointed(tmp_path, monkeypatch):
    settings = tiny_settings(tmp_path / "data")
    sessions = open_store(settings)
    write_tiny_kb(sessions)  # passages committed, none embedded: what a run killed after its SQL write leaves
    monkeypatch.setattr(kg.vectors, "EMBED_CHUNK", 2)
    monkeypatch.setattr(kg.vectors, "CHECKPOINT_SECONDS", 0.0)  # and however long a save takes:
    monkeypatch.setattr(kg.vectors, "SAVE_COST_SHARE", float("inf"))  # a checkpoint after every chunk
    with sessions() as session:
        total = consistency(session, None)["unembedded_passages"]
    assert total > 6
    with pytest.raises(KeyboardInterrupt):
        PassageVectors(settings, DyingEmbedder(calls=3), sessions).reconcile()
    with sessions() as session:
        kept = consistency(session, VectorIndex.load(settings.faiss_path))
    assert kept == {"orphan_vectors": 0, "flagged_without_vector": 0, "unembedded_passages": total - 6}
    assert PassageVectors(settings, HashingEmbedder(), sessions).reconcile()["embedded"] == total - 6
    with sessions() as session:
        assert consistency(session, VectorIndex.load(settings.faiss_path))["unembedded_passages"] == 0
    sessions.kw["bind"].dispose()
