"""Read API over the SQL store: entity lookup by any name, an entity's full view, passages by id.

Callers pass an open session; nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from kg.aliases import normalize_alias
from kg.store import Alias, Entity, Passage, Redirect, Triple, wikipedia_url
from kg.wikitext import normalize_title
from kgqa.records import FactHit

__all__ = ["EntityView", "Neighbour", "normalize_alias", "resolve_entity", "entity_view", "get_passage",
           "passages_by_vector_ids"]


class Neighbour(BaseModel):
    title: str
    predicate: str
    kind: str  # links_to | infobox
    entity_id: int | None = None


class EntityView(BaseModel):
    """Everything the KB knows about one entity, with provenance on each fact."""

    entity_id: int
    title: str
    url: str
    is_disambiguation: bool = False
    aliases: list[str] = Field(default_factory=list)
    facts: list[FactHit] = Field(default_factory=list)
    out_neighbours: list[Neighbour] = Field(default_factory=list)
    in_neighbours: list[Neighbour] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)


# Which kind of alias wins when one name is several entities' (retrieval.linking has its own order, bold before
# disambiguator); a person's surname is the weakest of all.
ALIAS_RANK = {"title": 0, "redirect": 1, "disambiguator": 2, "bold": 3, "surname": 4}


def _never_stored(text: str) -> bool:
    """Text no store holds: a NUL cannot occur in a dump (XML forbids it), and PostgreSQL refuses it as a parameter."""
    return "\x00" in text


def resolve_entity(session: Session, name: str) -> Entity | None:
    """By exact title, then through a redirect, then by folded alias (titles and redirects first, a person's
    surname last, and a surname that two entities share and no other alias has names none).

    Titles compare exactly (case-sensitive on every backend); aliases compare by
    ``normalize_alias``, folded in Python, so no collation takes part.
    """
    title = normalize_title(name)
    if not title or _never_stored(title):
        return None
    entity = session.scalar(select(Entity).where(Entity.title == title))
    if entity is not None:
        return entity
    target = session.scalar(select(Redirect.target).where(Redirect.title == title))
    if target:
        entity = session.scalar(select(Entity).where(Entity.title == target))
        if entity is not None:
            return entity
    rows = session.execute(select(Alias.source, Entity).join(Entity, Entity.entity_id == Alias.entity_id)
                           .where(Alias.norm == normalize_alias(name))).all()
    if all(source == "surname" for source, _ in rows) and len({entity.entity_id for _, entity in rows}) != 1:
        return None  # nothing, or a surname several people share
    return min(rows, key=lambda row: (ALIAS_RANK.get(row[0], 9), row[1].is_disambiguation, row[1].entity_id))[1]


def _titles_by_id(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(session.execute(select(Entity.entity_id, Entity.title).where(Entity.entity_id.in_(ids))).all())


def entity_view(session: Session, entity_id: int) -> EntityView | None:
    entity = session.get(Entity, entity_id)
    if entity is None:
        return None
    view = EntityView(entity_id=entity.entity_id, title=entity.title, url=wikipedia_url(entity.title),
                      is_disambiguation=entity.is_disambiguation)
    view.aliases = sorted({a for a in session.scalars(select(Alias.alias).where(Alias.entity_id == entity_id))}
                          - {entity.title})
    redirect_names = [entity.title] + list(session.scalars(select(Redirect.title).where(Redirect.target == entity.title)))
    for triple in session.scalars(select(Triple).where(Triple.subject_id == entity_id).order_by(Triple.id)):
        if triple.kind == "in_category":
            view.categories.append(triple.object_title.removeprefix("Category:"))
        elif triple.kind == "infobox":
            view.facts.append(FactHit(
                triple_id=triple.id, subject=entity.title, predicate=triple.predicate,
                object=triple.object_title or triple.object_literal, object_is_entity=bool(triple.object_title),
                page_id=triple.page_id, rev_id=triple.rev_id, field=triple.field, url=wikipedia_url(entity.title),
                score=1.0))
        if triple.kind in ("links_to", "infobox") and triple.object_title:
            view.out_neighbours.append(Neighbour(title=triple.object_title, predicate=triple.predicate,
                                                 kind=triple.kind, ))
    _resolve_neighbour_ids(session, view.out_neighbours)
    incoming = session.execute(select(Triple.subject_id, Triple.predicate, Triple.kind)
                               .where(Triple.object_title.in_(redirect_names)).order_by(Triple.id)).all()
    titles = _titles_by_id(session, {subject for subject, _, _ in incoming})
    view.in_neighbours = [Neighbour(title=titles[s], predicate=p, kind=k, entity_id=s)
                          for s, p, k in incoming if s in titles and s != entity_id]
    return view


def _resolve_neighbour_ids(session: Session, neighbours: list[Neighbour]) -> None:
    names = {n.title for n in neighbours}
    if not names:
        return
    ids = dict(session.execute(select(Entity.title, Entity.entity_id).where(Entity.title.in_(names))).all())
    redirected = dict(session.execute(select(Redirect.title, Entity.entity_id)
                                      .join(Entity, Entity.title == Redirect.target)
                                      .where(Redirect.title.in_(names))).all())
    for neighbour in neighbours:
        neighbour.entity_id = ids.get(neighbour.title, redirected.get(neighbour.title))


def get_passage(session: Session, passage_id: str) -> Passage | None:
    return None if _never_stored(passage_id) else session.get(Passage, passage_id)


def passages_by_vector_ids(session: Session, ids: Sequence[int]) -> list[Passage]:
    """Passages for FAISS ids, in the order given; ids with no passage (or -1) are left out."""
    wanted = [int(i) for i in ids if int(i) >= 0]
    if not wanted:
        return []
    found = {p.vector_id: p for p in session.scalars(select(Passage).where(Passage.vector_id.in_(wanted)))}
    return [found[i] for i in wanted if i in found]
