"""Batched SQL writes. A newer revision replaces a page's passages, facts and aliases; the same one is a no-op.

Functions take an open session and never commit: the pipeline commits a batch of
pages at once. A batch is written set-based, a few statements per table rather than
several per page, so a PostgreSQL server across a network costs a handful of round
trips per batch. New passages are written with ``embedded=False``; the vectors of
replaced passages are returned so the caller removes them from the index.

Values longer than the store's declared lengths (``kg.store``) are handled here, the
same way on every backend: a link or redirect target, alias or title longer than any
title is not a page name and is left out (an infobox link becomes a literal), infobox
keys and timestamps are cut. Writes are plain INSERT and DELETE, portable as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, exists, func, insert, literal, select
from sqlalchemy.orm import Session, aliased

from kg.aliases import normalize_alias
from kg.page_parser import ParsedPage, is_person, surname
from kg.parse_pool import RedirectItem
from kg.passages import passage_id
from kg.store import (KEY_CHARS, TIMESTAMP_CHARS, TITLE_CHARS, Alias, Entity, Page, Passage, Redirect, Triple,
                      fits_title, wikipedia_url)

IN_CHUNK = 900  # ids per IN (...) list: under every backend's bound-parameter limit


@dataclass
class BatchWritten:
    """What one batch changed: rows written, and the vectors of replaced passages to drop from the index."""

    removed_vectors: list[int] = field(default_factory=list)
    article_ids: list[int] = field(default_factory=list)  # articles written
    # (vector id, title, section, text) of every passage written, for the embedder: no re-read from SQL
    new_passages: list[tuple[int, str, str, str]] = field(default_factory=list)
    pages: int = 0
    redirects: int = 0
    passages: int = 0
    triples: int = 0
    disambiguation: int = 0
    redirected: int = 0  # stored articles that the batch turned into redirects


def next_vector_id(session: Session, floor: int = 0) -> int:
    """One past the largest vector id in SQL or ``floor`` (the index's largest), so ids are never reused live."""
    top = session.scalar(select(func.max(Passage.vector_id)))
    return max(top if top is not None else -1, floor - 1) + 1


def in_chunks(values: Sequence) -> Iterable[list]:
    for start in range(0, len(values), IN_CHUNK):
        yield list(values[start:start + IN_CHUNK])


def remove_pages(session: Session, page_ids: Sequence[int]) -> list[int]:
    """Delete articles with their passages, facts and aliases; returns the vector ids to drop from the index."""
    vector_ids: list[int] = []
    for ids in in_chunks(sorted(set(page_ids))):
        vector_ids += session.scalars(select(Passage.vector_id).where(Passage.page_id.in_(ids))).all()
        # A page's triples are the ones whose subject it is (the writer never writes another page's):
        # subject_id is indexed, page_id is not, and an unindexed delete scans every triple per batch.
        session.execute(delete(Triple).where(Triple.subject_id.in_(ids)))
        session.execute(delete(Passage).where(Passage.page_id.in_(ids)))
        session.execute(delete(Alias).where(Alias.entity_id.in_(ids)))
        session.execute(delete(Entity).where(Entity.entity_id.in_(ids)))
        session.execute(delete(Page).where(Page.page_id.in_(ids)))
    return vector_ids


def _last_of_each(items: Iterable, key) -> list:
    """One item per key, the last one given, in the order of those last occurrences."""
    last = {key(item): position for position, item in enumerate(items)}
    return [item for position, item in enumerate(items) if last[key(item)] == position]


def write_batch(session: Session, items: Sequence[ParsedPage | RedirectItem], first_vector_id: int) -> BatchWritten:
    """Replace whatever is stored for the batch's page ids by its articles and redirects.

    Within a batch the last item of a page id wins (an article that became a redirect
    is a redirect), and the last article of a title wins (a title moved to another page
    id; the old page is gone from the wiki, as is a stored page holding that title).
    """
    items = list(items)
    latest = _last_of_each(items, key=lambda item: item.page_id)
    articles = _last_of_each([i for i in latest if isinstance(i, ParsedPage)], key=lambda page: page.title)
    redirects = [i for i in latest if isinstance(i, RedirectItem)]
    page_ids = [item.page_id for item in latest]
    written = BatchWritten()
    for ids in in_chunks([r.page_id for r in redirects]):  # articles that became redirects, for the sync's record
        written.redirected += session.scalar(select(func.count()).select_from(Page).where(Page.page_id.in_(ids))) or 0
    written.removed_vectors = remove_pages(session, page_ids)
    titles = [page.title for page in articles]
    moved = [pid for chunk in in_chunks(titles)
             for pid in session.scalars(select(Page.page_id).where(Page.title.in_(chunk)))]
    written.removed_vectors += remove_pages(session, moved)
    for ids in in_chunks(page_ids):
        session.execute(delete(Redirect).where(Redirect.page_id.in_(ids)))
    for chunk in in_chunks(redirects):  # aliases an earlier run linked from these redirects
        unlink_redirects(session, [r.title for r in chunk])

    rows: dict[type, list[dict]] = {Page: [], Entity: [], Alias: [], Passage: [], Triple: [], Redirect: []}
    vector_id = first_vector_id
    for page in articles:
        vector_id = _article_rows(page, vector_id, rows)
        written.article_ids.append(page.page_id)
        written.disambiguation += page.is_disambiguation
    for redirect in redirects:
        if fits_title(redirect.title) and fits_title(redirect.target):
            rows[Redirect].append(dict(page_id=redirect.page_id, title=redirect.title, norm=alias_norm(redirect.title),
                                       target=redirect.target, rev_id=redirect.rev_id))
    for model, values in rows.items():  # parents before children, for the foreign keys
        if values:  # Core executemany on the table: the ORM's bulk path costs several times more per row
            session.connection().execute(insert(model.__table__), values)
    written.pages, written.redirects = len(articles), len(rows[Redirect])
    written.passages, written.triples = len(rows[Passage]), len(rows[Triple])
    written.new_passages = [(row["vector_id"], row["title"], row["section"], row["text"]) for row in rows[Passage]]
    return written


def write_page(session: Session, page: ParsedPage, first_vector_id: int) -> tuple[list[int], int]:
    """One article on its own; returns (vector ids to remove, passages written)."""
    written = write_batch(session, [page], first_vector_id)
    return written.removed_vectors, written.passages


def write_redirect(session: Session, page_id: int, title: str, target: str, rev_id: int) -> list[int]:
    """One redirect on its own (replacing an article that became one); returns the vector ids to remove.

    Its alias is made by ``link_redirects`` once the target is ingested.
    """
    return write_batch(session, [RedirectItem(page_id, title, target, rev_id)], 0).removed_vectors


def alias_norm(name: str) -> str:
    norm = normalize_alias(name)
    return norm if len(norm) <= TITLE_CHARS else ""  # folding can lengthen a name (NFKD); too long matches nothing


def _article_rows(page: ParsedPage, first_vector_id: int, rows: dict[type, list[dict]]) -> int:
    """Append the rows of one article; returns the next free vector id."""
    rows[Page].append(dict(page_id=page.page_id, title=page.title, rev_id=page.rev_id,
                           timestamp=page.timestamp[:TIMESTAMP_CHARS], is_disambiguation=page.is_disambiguation,
                           url=wikipedia_url(page.title)))
    rows[Entity].append(dict(entity_id=page.page_id, title=page.title, is_disambiguation=page.is_disambiguation))
    seen: set[str] = set()
    for alias, source in page.aliases:
        norm = alias_norm(alias)
        if norm and norm not in seen and fits_title(alias):
            seen.add(norm)
            rows[Alias].append(dict(norm=norm, alias=alias, entity_id=page.page_id, source=source))
    ids: dict[int, str] = {}
    for offset, draft in enumerate(page.passages):
        pid = passage_id(page.page_id, page.rev_id, draft.section_ordinal, draft.ordinal)
        ids[draft.ordinal] = pid
        rows[Passage].append(dict(id=pid, vector_id=first_vector_id + offset, page_id=page.page_id,
                                  rev_id=page.rev_id, title=page.title, section=draft.section,
                                  ordinal=draft.ordinal, text=draft.text, embedded=False))
    base = dict(subject_id=page.page_id, page_id=page.page_id, rev_id=page.rev_id, field="", passage_id=None,
                object_literal="")
    for fact in page.facts:
        entity = fact.object_title if fact.object_title and fits_title(fact.object_title) else ""
        rows[Triple].append(base | dict(predicate=fact.predicate[:KEY_CHARS], field=fact.field[:KEY_CHARS],
                                        object_title=entity, kind="infobox",
                                        object_literal="" if entity else (fact.literal or fact.object_title or "")))
    rows[Triple].extend(base | dict(predicate="links_to", object_title=target, kind="links_to",
                                    passage_id=ids.get(ordinal))
                        for target, ordinal in page.links.items() if fits_title(target))
    rows[Triple].extend(base | dict(predicate="in_category", object_title=f"Category:{category}", kind="in_category")
                        for category in page.categories if fits_title(f"Category:{category}"))
    return first_vector_id + len(page.passages)


def unlink_redirects(session: Session, titles: Sequence[str]) -> int:
    """Delete the aliases that the redirects titled ``titles`` made (at most ``IN_CHUNK`` titles); returns how many.

    A redirect alias that had taken the place of its person's surname alias ("Einstein", see
    ``link_redirects``) gives it back, so the entity keeps the name as the page wrote it.
    """
    made = (Alias.norm.in_({alias_norm(title) for title in titles}), Alias.source == "redirect",
            Alias.alias.in_(titles))  # norm is indexed
    unlinked = session.execute(select(Alias.norm, Alias.entity_id).where(*made)).all()
    removed = session.execute(delete(Alias).where(*made)).rowcount or 0
    _restore_surnames(session, unlinked)
    return removed


def _restore_surnames(session: Session, unlinked: Sequence[tuple[str, int]]) -> None:
    """A surname alias again for each (folded name, entity) that is a person's surname, by the entity's stored
    title, infobox keys and categories (what ``kg.page_parser.parse_page`` read them from)."""
    for chunk in in_chunks(sorted({entity_id for _, entity_id in unlinked})):
        titles = dict(session.execute(select(Entity.entity_id, Entity.title).where(Entity.entity_id.in_(chunk))).all())
        said: dict[int, tuple[list[str], list[str]]] = {entity_id: ([], []) for entity_id in titles}
        for subject, kind, predicate, category in session.execute(
                select(Triple.subject_id, Triple.kind, Triple.predicate, Triple.object_title)
                .where(Triple.subject_id.in_(chunk), Triple.kind.in_(("infobox", "in_category")))):
            keys, categories = said[subject]
            if kind == "infobox":
                keys.append(predicate)
            else:
                categories.append(category.removeprefix("Category:"))
        for norm, entity_id in unlinked:
            if entity_id not in titles:
                continue  # in another chunk, or gone
            name = surname(titles[entity_id]) if is_person(*said[entity_id]) else None
            taken = session.scalar(select(Alias.id).where(Alias.norm == norm, Alias.entity_id == entity_id))
            if name and alias_norm(name) == norm and taken is None:
                session.add(Alias(norm=norm, alias=name, entity_id=entity_id, source="surname"))
    session.flush()


def link_redirects(session: Session) -> int:
    """Turn every redirect whose target is an ingested entity into an alias of it (set-based, so it scales).

    When several redirects fold to the same name, the alias keeps the title of the one
    with the lowest page id: a choice that no collation can change between backends.
    A redirect of a person's surname ("Einstein" to Albert Einstein) takes the place of
    the surname alias the page made, as the stronger alias of the same name.
    """
    superseded = (select(Alias.id).join(Entity, Entity.entity_id == Alias.entity_id)
                  .join(Redirect, (Redirect.norm == Alias.norm) & (Redirect.target == Entity.title))
                  .where(Alias.source == "surname"))
    session.execute(delete(Alias).where(Alias.id.in_(superseded)))
    other = aliased(Redirect)
    first_of_name = ~exists().where(other.norm == Redirect.norm, other.target == Redirect.target,
                                    other.page_id < Redirect.page_id)
    linked = exists().where(Alias.norm == Redirect.norm, Alias.entity_id == Entity.entity_id)
    chosen = (select(Redirect.norm, Redirect.title, Entity.entity_id, literal("redirect"))
              .join(Entity, Entity.title == Redirect.target)
              .where(Redirect.norm != "", first_of_name, ~linked)
              .order_by(Redirect.page_id))
    result = session.execute(insert(Alias).from_select(["norm", "alias", "entity_id", "source"], chosen))
    return result.rowcount or 0
