"""Parsing on every core with bounded memory: the feeder thread reads the dump and skips pages already
stored at their revision; worker processes parse the rest; at most ``window`` pages are in flight, so a
20 GB dump streams in constant memory and parsing runs ahead while the main process embeds.
"""

from __future__ import annotations

import multiprocessing
import threading
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sqlalchemy import select

from kg.dump_reader import RawPage
from kg.page_parser import ParsedPage, is_list_page, parse_page, redirect_target
from kg.store import Page, Redirect, fits_title, make_engine
from kgqa.settings import Settings


CHECK_CHUNK = 64  # pages whose stored revisions one query reads: a round trip per 64 pages, not per page


@dataclass
class RedirectItem:
    page_id: int
    title: str
    target: str
    rev_id: int


def storable(raw: RawPage) -> bool:
    """Whether the store can hold the page: a title within its title length, ids within 64 bits.

    MediaWiki titles stop at 255 bytes, so a longer one is not a real page; SQLite
    would take it and PostgreSQL refuse it, so it is skipped on every backend.
    """
    return fits_title(raw.title) and 0 <= raw.page_id < 2**63 and 0 <= raw.rev_id < 2**63


def _wanted(raw: RawPage) -> bool:
    """Whether the store keeps the page: a storable main-namespace article (list pages aside) or redirect."""
    return raw.ns == 0 and (raw.redirect is not None or not is_list_page(raw.title)) and storable(raw)


def _prepare(raw: RawPage) -> ParsedPage | RedirectItem:
    """Worker-side: parse an article, or pass a redirect through."""
    if raw.redirect is not None:
        return RedirectItem(raw.page_id, raw.title, redirect_target(raw), raw.rev_id)
    return parse_page(raw)


class Feed:
    """Yields the pages that need parsing; counts the rest. Runs in the pool's feeder thread."""

    def __init__(self, settings: Settings, pages: Iterable[RawPage], window: int, resume_after: int,
                 held: array | None = None) -> None:
        self.settings, self.pages, self.resume_after = settings, pages, resume_after
        self.held = held  # with a sync: the id of every page read that the store may hold (int64, 8 bytes a page)
        self.slots = threading.BoundedSemaphore(window)
        self.stop = threading.Event()
        self.unchanged = self.skipped = self.read = 0

    def release(self) -> None:
        self.slots.release()

    def __iter__(self) -> Iterator[RawPage]:
        engine = make_engine(self.settings.database_url)  # this thread's own connections
        try:
            for chunk in self._candidates():
                for raw in self._changed(engine, chunk):
                    while not self.slots.acquire(timeout=0.2):
                        if self.stop.is_set():
                            return
                    yield raw
        finally:
            engine.dispose()

    def _candidates(self) -> Iterator[list[RawPage]]:
        """The storable articles and redirects past the resume point, ``CHECK_CHUNK`` at a time."""
        resuming = self.resume_after > 0
        chunk: list[RawPage] = []
        held = self.held
        for raw in self.pages:
            self.read += 1
            wanted = _wanted(raw)
            if held is not None and wanted:
                held.append(raw.page_id)
            if resuming:
                resuming = raw.page_id != self.resume_after
                self.unchanged += 1
                continue
            if not wanted:
                self.skipped += 1
                continue
            chunk.append(raw)
            if len(chunk) >= CHECK_CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _changed(self, engine, chunk: list[RawPage]) -> list[RawPage]:
        """The pages of ``chunk`` not already stored at their revision (or newer): one query per table."""
        stored: dict[tuple[bool, int], int] = {}
        with engine.connect() as conn:
            for is_redirect, table in ((False, Page), (True, Redirect)):
                ids = [raw.page_id for raw in chunk if (raw.redirect is not None) == is_redirect]
                if ids:
                    rows = conn.execute(select(table.page_id, table.rev_id).where(table.page_id.in_(ids)))
                    stored.update(((is_redirect, page_id), rev_id) for page_id, rev_id in rows)
        changed = []
        for raw in chunk:
            rev_id = stored.get((raw.redirect is not None, raw.page_id))
            if rev_id is not None and rev_id >= raw.rev_id:
                self.unchanged += 1
            else:
                changed.append(raw)
        return changed


def parsed_stream(feed: Feed, workers: int) -> Iterator[ParsedPage | RedirectItem]:
    if workers <= 1:
        for raw in feed:
            feed.release()
            yield _prepare(raw)
        return
    pool = multiprocessing.get_context("spawn").Pool(workers)
    try:
        for item in pool.imap(_prepare, feed, chunksize=2):
            feed.release()
            yield item
    finally:
        feed.stop.set()
        pool.terminate()
        pool.join()
