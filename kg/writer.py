"""Per-page SQL upserts. A newer revision replaces the page's passages, facts and aliases; the same one is a no-op.

Functions take an open session and never commit: the pipeline commits a batch of
pages at once. New passages are written with ``embedded=False``; the vectors of
replaced passages are returned so the caller removes them from the index.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from kg.aliases import normalize_alias
from kg.page_parser import ParsedPage
from kg.passages import passage_id
from kg.store import Alias, Entity, Page, Passage, Redirect, Triple, wikipedia_url


def next_vector_id(session: Session, floor: int = 0) -> int:
    """One past the largest vector id in SQL or ``floor`` (the index's largest), so ids are never reused live."""
    top = session.scalar(select(func.max(Passage.vector_id)))
    return max(top if top is not None else -1, floor - 1) + 1


def remove_page(session: Session, page_id: int) -> list[int]:
    """Delete an article with its passages, facts and aliases; returns the vector ids to drop from the index."""
    vector_ids = list(session.scalars(select(Passage.vector_id).where(Passage.page_id == page_id)))
    session.execute(delete(Triple).where(Triple.page_id == page_id))
    session.execute(delete(Passage).where(Passage.page_id == page_id))
    session.execute(delete(Alias).where(Alias.entity_id == page_id))
    session.execute(delete(Entity).where(Entity.entity_id == page_id))
    session.execute(delete(Page).where(Page.page_id == page_id))
    return vector_ids


def write_page(session: Session, page: ParsedPage, first_vector_id: int) -> tuple[list[int], int]:
    """Replace whatever is stored for ``page.page_id``; returns (vector ids to remove, passages written)."""
    removed = remove_page(session, page.page_id)
    session.execute(delete(Redirect).where(Redirect.page_id == page.page_id))
    clash = session.scalar(select(Page.page_id).where(Page.title == page.title))
    if clash is not None:  # the title moved to this page id; the old page is gone from the wiki
        removed += remove_page(session, clash)
    session.add(Page(page_id=page.page_id, title=page.title, rev_id=page.rev_id, timestamp=page.timestamp,
                     is_disambiguation=page.is_disambiguation, url=wikipedia_url(page.title)))
    session.add(Entity(entity_id=page.page_id, title=page.title, is_disambiguation=page.is_disambiguation))
    session.flush()
    seen: set[str] = set()
    for alias, source in page.aliases:
        norm = normalize_alias(alias)
        if norm and norm not in seen:
            seen.add(norm)
            session.add(Alias(norm=norm, alias=alias, entity_id=page.page_id, source=source))
    ids: dict[int, str] = {}
    for offset, draft in enumerate(page.passages):
        pid = passage_id(page.page_id, page.rev_id, draft.section_ordinal, draft.ordinal)
        ids[draft.ordinal] = pid
        session.add(Passage(id=pid, vector_id=first_vector_id + offset, page_id=page.page_id, rev_id=page.rev_id,
                            title=page.title, section=draft.section, ordinal=draft.ordinal, text=draft.text,
                            embedded=False))
    provenance = dict(page_id=page.page_id, rev_id=page.rev_id)
    triples = [Triple(subject_id=page.page_id, predicate=f.predicate, object_title=f.object_title or "",
                      object_literal="" if f.object_title else f.literal, kind="infobox", field=f.field,
                      **provenance) for f in page.facts]
    triples += [Triple(subject_id=page.page_id, predicate="links_to", object_title=target, kind="links_to",
                       passage_id=ids.get(ordinal), **provenance) for target, ordinal in page.links.items()]
    triples += [Triple(subject_id=page.page_id, predicate="in_category", object_title=f"Category:{category}",
                       kind="in_category", **provenance) for category in page.categories]
    session.add_all(triples)
    return removed, len(page.passages)


def write_redirect(session: Session, page_id: int, title: str, target: str, rev_id: int) -> list[int]:
    """Record a redirect (replacing an article that became one); its alias is linked by ``link_redirects``."""
    removed = remove_page(session, page_id)
    session.execute(delete(Alias).where(Alias.source == "redirect", Alias.alias == title))
    session.merge(Redirect(page_id=page_id, title=title, norm=normalize_alias(title), target=target, rev_id=rev_id))
    return removed


def link_redirects(session: Session) -> int:
    """Turn every redirect whose target is an ingested entity into an alias of it (set-based, so it scales)."""
    result = session.execute(text(
        "INSERT INTO aliases (norm, alias, entity_id, source) "
        "SELECT r.norm, min(r.title), e.entity_id, 'redirect' FROM redirects r JOIN entities e ON e.title = r.target "
        "WHERE r.norm <> '' AND NOT EXISTS (SELECT 1 FROM aliases a WHERE a.norm = r.norm AND a.entity_id = e.entity_id) "
        "GROUP BY r.norm, e.entity_id"
    ))
    return result.rowcount or 0
