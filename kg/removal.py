"""Removing pages: ``kgqa ingest --sync`` drops what a full dump no longer holds, ``kgqa kg delete`` what it names.

Everything derived from a removed article goes in one SQL transaction: its page, entity, passages,
the facts it is the subject of (infobox, links, categories) and every alias of it (its own and those
redirects made). A removed redirect page takes its redirect row and the alias it made. Facts of other
pages that name a removed page stay as those pages wrote them (their text still says it), unlinked:
their object is a title no entity holds, as a link to a page never ingested is; an ingest that brings
the page back links them again. So what a sync keeps is byte for byte what it held before.

The SQL transaction is the commit point, recorded with what it removed (``Removal``, shown by
``kgqa kg stats``): a run killed before it leaves everything as before. The files derived from SQL
follow it: the vectors are removed from the FAISS index (flat or IVF: really gone, not hidden) and
the index saved; a kill in between leaves orphan vectors that no reader can reach (no passage has
their id) and that the next writer's ``PassageVectors.reconcile`` drops. The BM25 index, passage
catalog and link graph are rebuilt by their SQL stamps, the NetworkX snapshot is dropped (rebuilt
on first use), and ``index/generation.json`` is bumped last, so running servers reload.
"""

from __future__ import annotations

import json
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from kg import index_files
from kg.store import Alias, Page, Redirect, Removal, Triple
from kg.vectors import pause_point
from kg.wikitext import normalize_title
from kg.writer import in_chunks, remove_pages, unlink_redirects
from kgqa.errors import KgqaError
from kgqa.settings import Settings

TITLES_KEPT = 50  # titles a removal record lists (its counts cover every page)
# A part of a split dump names the page ids it holds: "...pages-articles1.xml-p1p41242.bz2".
_PAGE_RANGE = re.compile(r"-p(\d+)p(\d+)(?=[-.]|$)")


class SyncRefused(KgqaError):
    """A sync that would delete on the word of a dump that cannot vouch for it: partial, or another wiki's."""


class PageNotFound(KgqaError):
    """``kgqa kg delete`` was given a name that no stored page or redirect has."""


@dataclass
class Removed:
    """What one removal took out of the knowledge base."""

    pages: int = 0
    redirects: int = 0
    passages: int = 0
    triples: int = 0
    aliases: int = 0
    titles: list[str] = field(default_factory=list)
    vector_ids: list[int] = field(default_factory=list)

    def describe(self) -> str:
        named = ", ".join(self.titles[:10]) + (" ..." if len(self.titles) > 10 else "")
        return (f"removed {counted(self.pages, 'page')}{f' ({named})' if named else ''}, "
                f"{counted(self.redirects, 'redirect')}; {counted(self.passages, 'passage')} and their vectors, "
                f"{counted(self.triples, 'triple')}, {counted(self.aliases, 'alias', 'aliases')}")


def counted(number: int, noun: str, plural: str = "") -> str:
    """``number`` and ``noun``, in the plural unless there is exactly one: "1 page", "3 aliases"."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def turned_into_redirects(pages: int) -> str:
    return f"{counted(pages, 'page')} turned into {'a redirect' if pages == 1 else 'redirects'}"


def page_range(dump_path: Path) -> tuple[int, int] | None:
    """The page ids a part of a split dump holds, read from its name (``-p<first>p<last>``); None for a whole dump."""
    found = _PAGE_RANGE.findall(Path(dump_path).name)
    return (int(found[-1][0]), int(found[-1][1])) if found else None


def check_same_wiki(session: Session, wiki: str) -> None:
    """Refuse to sync with a dump of another wiki than the syncs before it (page ids are per wiki)."""
    last = session.scalar(select(Removal.wiki).where(Removal.kind == "sync", Removal.wiki != "")
                          .order_by(Removal.id.desc()).limit(1))
    if wiki and last and last != wiki:
        raise SyncRefused(f"this knowledge base is synced with {last}; the dump is {wiki}: a sync removes every "
                          "page the dump does not hold, so it must be a dump of the same wiki")


def missing_pages(session: Session, held: array, bounds: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """(stored articles, stored redirects) whose page ids ``held`` lacks, within ``bounds`` when the dump is a part."""
    held_ids = np.unique(np.frombuffer(held, dtype=np.int64)) if len(held) else np.zeros(0, np.int64)

    def gone(column) -> np.ndarray:
        stored = np.fromiter(session.scalars(select(column)), dtype=np.int64)
        if bounds is not None:
            stored = stored[(stored >= bounds[0]) & (stored <= bounds[1])]
        return np.sort(stored[~np.isin(stored, held_ids)])

    return gone(Page.page_id), gone(Redirect.page_id)


def remove_in_sql(session: Session, page_ids: Sequence[int], redirect_ids: Sequence[int]) -> Removed:
    """Delete articles and redirect pages with everything derived from them; the caller commits."""
    removed = Removed()

    def count(model, *where) -> int:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0

    page_ids, redirect_ids = sorted(set(map(int, page_ids))), sorted(set(map(int, redirect_ids)))
    for ids in in_chunks(page_ids):
        removed.titles += session.scalars(select(Page.title).where(Page.page_id.in_(ids)).order_by(Page.page_id))
        removed.pages += count(Page, Page.page_id.in_(ids))
        removed.triples += count(Triple, Triple.subject_id.in_(ids))
        removed.aliases += count(Alias, Alias.entity_id.in_(ids))
    removed.vector_ids = remove_pages(session, page_ids)
    removed.passages = len(removed.vector_ids)
    for ids in in_chunks(redirect_ids):
        titles = list(session.scalars(select(Redirect.title).where(Redirect.page_id.in_(ids))))
        if titles:  # the aliases these redirects made (as the writer drops them when a redirect is rewritten)
            removed.aliases += unlink_redirects(session, titles)
        removed.redirects += session.execute(delete(Redirect).where(Redirect.page_id.in_(ids))).rowcount or 0
    return removed


def apply_removal(settings: Settings, sessions, vectors, page_ids: Sequence[int], redirect_ids: Sequence[int], *,
                  kind: str, source: str, wiki: str = "", run_id: int | None = None, redirected: int = 0) -> Removed:
    """Remove the pages in one SQL transaction with their record, then their vectors from the index (saved);
    ``vectors`` is the writer's open ``PassageVectors``."""
    with sessions() as session:
        removed = remove_in_sql(session, page_ids, redirect_ids)
        session.add(Removal(kind=kind, source=source[:2000], wiki=wiki, run_id=run_id, pages=removed.pages,
                            redirects=removed.redirects, redirected=redirected, passages=removed.passages,
                            triples=removed.triples, aliases=removed.aliases,
                            titles=json.dumps(removed.titles[:TITLES_KEPT], ensure_ascii=False)))
        pause_point("removal-written")
        session.commit()
    pause_point("removal-committed")
    vectors.remove(removed.vector_ids)
    vectors.checkpoint(force=True)
    if removed.pages or removed.redirects:
        drop_graph_snapshot(settings)
    return removed


def drop_graph_snapshot(settings: Settings) -> None:
    """Remove the NetworkX pickle and its stamp: ``kg.graph.load_graph`` builds it from SQL on its next use."""
    path = settings.graph_path
    if path.is_file() or index_files.stamped(path.parent, path):
        path.unlink(missing_ok=True)
        index_files.stamp(path.parent, [path])  # drops its entry


def resolve_pages(session: Session, names: Sequence[str]) -> tuple[list[int], list[int], list[str]]:
    """(article ids, redirect page ids, names that match nothing) for titles or page ids.

    A number is a page id when a page or redirect has it, else a title; a title is taken as a
    link would be (underscores as spaces, first letter upper-cased).
    """
    pages: list[int] = []
    redirects: list[int] = []
    unknown: list[str] = []
    for name in names:
        text = name.strip()
        if text.isdigit() and int(text) < 2**63:
            if session.get(Page, int(text)) is not None:
                pages.append(int(text))
                continue
            if session.get(Redirect, int(text)) is not None:
                redirects.append(int(text))
                continue
        title = normalize_title(text)
        page_id = session.scalar(select(Page.page_id).where(Page.title == title)) if title else None
        redirect_id = session.scalar(select(Redirect.page_id).where(Redirect.title == title)) if title else None
        if page_id is not None:
            pages.append(page_id)
        elif redirect_id is not None:
            redirects.append(redirect_id)
        else:
            unknown.append(name)
    return pages, redirects, unknown


def last_removals(session: Session) -> dict[str, str]:
    """``kgqa kg stats``' lines on the last sync and the last delete."""
    lines = {}
    for kind in ("sync", "delete"):
        record = session.scalars(select(Removal).where(Removal.kind == kind).order_by(Removal.id.desc())
                                 .limit(1)).first()
        if record is None:
            continue
        titles = json.loads(record.titles or "[]")
        named = ", ".join(titles[:10]) + (" ..." if record.pages > 10 else "")
        redirected = (f"; {turned_into_redirects(record.redirected)} (now aliases)"
                      if kind == "sync" else "")
        lines[f"last_{kind}"] = (
            f"#{record.id} {record.finished_at:%Y-%m-%d %H:%M:%S} {record.source}: removed {counted(record.pages, 'page')}"
            f"{f' ({named})' if named else ''}, {counted(record.redirects, 'redirect')}, "
            f"{counted(record.passages, 'passage')} and vectors, {counted(record.triples, 'triple')}, "
            f"{counted(record.aliases, 'alias', 'aliases')}{redirected}")
    return lines


def delete_pages(settings: Settings, names: Sequence[str], *, embedder=None) -> Removed:
    """``kgqa kg delete``: remove the pages named (titles or page ids) and everything derived from them.

    All names must match a stored article or redirect, else ``PageNotFound`` and nothing is removed.
    Runs under the ingest lock, as a writer. A page removed here comes back with the next ingest of a
    dump that still holds it.
    """
    from kg.link_graph import load_link_graph
    from kg.sparse_index import load_sparse_index
    from kg.store import ingest_lock, init_db, open_knowledge_base, session_factory
    from kg.vectors import PassageVectors
    from kg.writer import link_redirects

    if not names:
        raise PageNotFound("name at least one page to delete (a title or a page id)")
    engine = open_knowledge_base(settings)
    try:
        with ingest_lock(engine):
            init_db(engine)  # the removals table, in a store made before it existed
            sessions = session_factory(engine)
            with sessions() as session:
                page_ids, redirect_ids, unknown = resolve_pages(session, names)
            if unknown:
                raise PageNotFound(f"no stored page or redirect is named {', '.join(map(repr, unknown))}; "
                                   "nothing was deleted")
            if embedder is None:
                from models.embedding.embedder import Embedder

                embedder = Embedder(settings)
            vectors = PassageVectors(settings, embedder, sessions)
            vectors.reconcile()  # drops what a killed writer left (orphan vectors of an earlier removal)
            try:
                removed = apply_removal(settings, sessions, vectors, page_ids, redirect_ids, kind="delete",
                                        source=" | ".join(names))
            finally:
                vectors.close()
            pause_point("finishing")
            with sessions() as session:
                link_redirects(session)  # another redirect of a removed one's name may now make the alias
                session.commit()
                load_link_graph(settings, session)
                load_sparse_index(settings, session)
            index_files.complete(settings.index_dir)
            index_files.bump_generation(settings.index_dir, "delete")
    finally:
        engine.dispose()
    return removed
