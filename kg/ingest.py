"""The ingestion pipeline: dump reader -> parsing worker pool -> SQL batches -> embeddings -> FAISS -> graph.

The reader and the revision check run in the pool's feeder thread, parsing runs
in worker processes on every core, and the main process writes SQL and embeds,
so parsing keeps going while the embedder works. A bounded window of pages in
flight keeps memory constant on a 20 GB dump. Every batch is committed on its
own; vectors follow the protocol in ``kg.vectors``, so a run killed at any point
and run again ends in the same state as a clean run. One run writes a database at
a time: a second one is refused (``kg.store.ingest_lock``).

With ``sync``, a dump read to its end also removes every stored page it does not hold
(``kg.removal``): the store then holds what the dump holds, as a fresh ingest of it would.
"""

from __future__ import annotations

import os
import time
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from kg import index_files
from kg.dump_reader import RawPage, iter_pages
from kg.errors import DumpError
from kg.link_graph import load_link_graph
from kg.page_parser import ParsedPage
from kg.parse_pool import Feed, RedirectItem, parsed_stream
from kg.removal import Removed, SyncRefused, apply_removal, check_same_wiki, missing_pages, page_range
from kg.sparse_index import load_sparse_index
from kg.store import Entity, IngestRun, ingest_lock, init_db, make_engine, session_factory
from kg.vectors import PassageVectors, pause_point
from kg.writer import link_redirects, next_vector_id, write_batch
from kgqa.settings import Settings

if TYPE_CHECKING:
    from models.embedding.embedder import PassageEncoder

# A SQL transaction holds up to BATCH_PAGES pages or BATCH_PASSAGES passages, whichever comes first: about
# 20 of the sample's long articles, or 256 stubs. bench/scale.py (5,000 synthetic pages, 3 passages each)
# built at 278 pages/s with 32-page batches and 427 pages/s with 256: fewer statements and commits per page.
BATCH_PAGES = 256
BATCH_PASSAGES = 512
WINDOW_PER_WORKER = 16  # pages in flight per worker process


@dataclass
class IngestSummary:
    """What one run did: articles, redirects, passages and triples written; entities in the KB afterwards."""

    pages: int = 0
    redirects: int = 0
    passages: int = 0
    entities: int = 0
    triples: int = 0
    elapsed_s: float = 0.0
    unchanged: int = 0  # pages already stored at this revision (or newer)
    skipped: int = 0  # other namespaces and list pages
    disambiguation: int = 0
    redirected: int = 0  # stored articles that became redirects (now aliases of their targets)
    removed: Removed | None = None  # with a sync: what it removed
    repaired: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)  # seconds per stage: writing and embedding, then each finishing step


def ingest_dump(settings: Settings, dump_path: Path, *, limit: int | None = None, resume: bool = False,
                progress: bool = True, workers: int | None = None, embedder=None, sync: bool = False) -> IngestSummary:
    """Ingest a MediaWiki dump into the knowledge base under ``settings.data_dir``.

    ``limit`` stops after that many pages read from the dump. Bad input raises
    ``DumpError``; whatever was committed before it stays consistent. ``sync`` (a full
    dump, so never with ``limit``) then removes the stored pages the dump no longer holds;
    a part of a split dump (``-p<first>p<last>`` in its name) only those in its id range.
    """
    if sync and limit is not None:
        raise SyncRefused("--sync removes every page the dump does not hold, so it reads the whole dump: "
                          "drop --limit (a partial ingest never deletes)")
    started = time.monotonic()
    dump_path = Path(dump_path)
    info: dict = {}
    pages = iter_pages(dump_path, info)
    first = next(pages, None)  # fail fast on a missing, empty or non-dump file before touching the KB
    settings.index_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url, bulk_writes=True)
    try:
        with ingest_lock(engine):  # one run writes a database at a time; a second is refused in one line
            return _ingest(settings, engine, dump_path, pages, first, started, limit=limit, resume=resume,
                           progress=progress, workers=workers, embedder=embedder,
                           sync_wiki=info.get("wiki", "") if sync else None)
    finally:
        engine.dispose()


def _ingest(settings: Settings, engine, dump_path: Path, pages: Iterator[RawPage], first: RawPage | None,
            started: float, *, limit, resume, progress, workers, embedder, sync_wiki: str | None) -> IngestSummary:
    """The run itself, under the ingest lock; ``sync_wiki`` (the dump's wiki) asks for a sync."""
    init_db(engine)
    sessions = session_factory(engine)
    if sync_wiki is not None:
        with sessions() as session:
            check_same_wiki(session, sync_wiki)
    resume_after = _resume_point(sessions, dump_path) if resume else 0

    def source() -> Iterator[RawPage]:
        if first is None:
            return
        yield first
        count = 1
        for raw in pages:
            if limit is not None and count >= limit:
                return
            count += 1
            yield raw

    worker_count = workers if workers is not None else (os.cpu_count() or 1)
    held = array("q") if sync_wiki is not None else None
    feed = Feed(settings, source() if limit != 0 else iter(()), WINDOW_PER_WORKER * max(worker_count, 1), resume_after,
                held)
    source_name = str(dump_path.resolve())

    def remove_missing(vectors: PassageVectors, run_id: int, summary: IngestSummary) -> None:
        """The sync, once the whole dump is read and written: what it does not hold goes."""
        began = time.monotonic()
        if not held:
            raise SyncRefused(f"{dump_path.name} holds no page the knowledge base could keep: a sync with it would "
                              "remove every page, so nothing was removed")
        with sessions() as session:
            gone_pages, gone_redirects = missing_pages(session, held, page_range(dump_path))
        summary.removed = apply_removal(settings, sessions, vectors, gone_pages.tolist(), gone_redirects.tolist(),
                                        kind="sync", source=source_name, wiki=sync_wiki, run_id=run_id,
                                        redirected=summary.redirected)
        summary.stages["sync"] = round(time.monotonic() - began, 3)

    return _write_all(settings, sessions, source_name, parsed_stream(feed, worker_count), feed, started,
                      progress=progress, embedder=embedder, after_write=remove_missing if held is not None else None)


def ingest_parsed(settings: Settings, items: Iterable[ParsedPage | RedirectItem], *, source: str,
                  progress: bool = False, embedder: PassageEncoder | None = None) -> IngestSummary:
    """Write pages already parsed (``bench/scale.py`` makes them) through the same batches, vectors and finish
    as a dump ingest; ``source`` names them in the run record."""
    started = time.monotonic()
    settings.index_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url, bulk_writes=True)
    try:
        with ingest_lock(engine):
            init_db(engine)
            return _write_all(settings, session_factory(engine), source, iter(items), None, started,
                              progress=progress, embedder=embedder)
    finally:
        engine.dispose()


def _write_all(settings: Settings, sessions, source: str, items: Iterator[ParsedPage | RedirectItem],
               feed: Feed | None, started: float, *, progress: bool, embedder, after_write=None) -> IngestSummary:
    """Batches of parsed items to SQL and the index, then ``after_write`` (the sync), then the finish; the run
    record says how it went."""
    if embedder is None:
        from models.embedding.embedder import Embedder

        embedder = Embedder(settings)
    vectors = PassageVectors(settings, embedder, sessions)
    summary = IngestSummary()
    summary.repaired = vectors.reconcile()
    with sessions() as session:
        run = IngestRun(dump=source)
        session.add(run)
        session.commit()
        run_id = run.id
    bar = _progress_bar(progress)
    status, error = "failed", ""
    read = 0
    try:
        batch: list[ParsedPage | RedirectItem] = []
        passages = 0
        for item in items:
            batch.append(item)
            read += 1
            passages += len(item.passages) if isinstance(item, ParsedPage) else 0
            if len(batch) >= BATCH_PAGES or passages >= BATCH_PASSAGES:
                _write_batch(sessions, vectors, batch, summary, run_id)
                bar.update((feed.read if feed else read) - bar.n)
                batch, passages = [], 0
        _write_batch(sessions, vectors, batch, summary, run_id)
        bar.update((feed.read if feed else read) - bar.n)
        if after_write is not None:
            after_write(vectors, run_id, summary)
        status = "done"
    except BaseException as exc:
        error = str(exc) if isinstance(exc, DumpError) else f"{type(exc).__name__}: {exc}"
        raise
    finally:
        bar.close()
        vectors.checkpoint(force=True)
        vectors.close()  # the finishing steps need the memory more than the saved index does
        summary.stages["write and embed"] = round(time.monotonic() - started, 3)
        if feed is not None:
            summary.unchanged, summary.skipped = feed.unchanged, feed.skipped
        _finish(settings, sessions, run_id, summary, status, error, started)
    return summary


def _write_batch(sessions, vectors: PassageVectors, batch, summary: IngestSummary, run_id: int) -> None:
    if not batch:
        return
    pause_point("parsed")
    with sessions() as session:
        written = write_batch(session, batch, next_vector_id(session, floor=vectors.max_id() + 1))
        summary.pages += written.pages
        summary.redirects += written.redirects
        summary.passages += written.passages
        summary.triples += written.triples
        summary.disambiguation += written.disambiguation
        summary.redirected += written.redirected
        run = session.get(IngestRun, run_id)
        run.last_page_id = batch[-1].page_id
        run.pages, run.redirects, run.passages, run.triples = (summary.pages, summary.redirects,
                                                                summary.passages, summary.triples)
        pause_point("sql-written")
        session.commit()
    pause_point("sql-committed")
    vectors.remove(written.removed_vectors)
    vectors.embed(written.new_passages)  # straight from the batch: no re-read
    vectors.checkpoint()


def _finish(settings, sessions, run_id, summary, status, error, started) -> None:
    """Link redirects, build the link graph and the sparse index, close the run record and stamp every index
    file in the manifest (kg/index_files.py), whatever happened.

    The NetworkX fact graph is not built here: nothing that serves answers reads it, and
    ``kg.graph.load_graph`` builds it from SQL on first use.
    """
    pause_point("finishing")
    stage = time.monotonic()

    def lap(name: str) -> None:
        nonlocal stage
        now = time.monotonic()
        summary.stages[name] = round(now - stage, 3)
        stage = now

    with sessions() as session:
        link_redirects(session)
        run = session.get(IngestRun, run_id)
        run.status, run.error = status, error[:2000]
        run.finished_at = datetime.now(timezone.utc)
        session.commit()
        summary.entities = session.scalar(select(func.count()).select_from(Entity)) or 0
        lap("redirects")
        load_link_graph(settings, session)  # built now, so a server's first load only maps it
        lap("link graph")
        load_sparse_index(settings, session)  # BM25 and the passage catalog, likewise
        lap("bm25")
    index_files.complete(settings.index_dir)  # every file under index/ stamped (its writer stamped most)
    index_files.bump_generation(settings.index_dir, "ingest")  # last: running servers reload
    lap("stamps")
    summary.elapsed_s = round(time.monotonic() - started, 3)


def _resume_point(sessions, dump_path: Path) -> int:
    """The last page committed by the latest unfinished run over this dump (0: start over)."""
    with sessions() as session:
        run = session.scalars(select(IngestRun).where(IngestRun.dump == str(dump_path.resolve()))
                              .order_by(IngestRun.id.desc()).limit(1)).first()
        return run.last_page_id if run is not None and run.status != "done" else 0


def _progress_bar(enabled: bool):
    from kgqa.progress import progress_bar

    return progress_bar(total=None, unit="pages", desc="ingest", enabled=enabled)
