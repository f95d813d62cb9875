"""The plain functions behind ``kgqa kg stats`` and ``kgqa kg show``."""

from __future__ import annotations


from sqlalchemy import func, inspect, select

from kg import index_files
from kg.queries import EntityView, entity_view, resolve_entity
from kg.removal import last_removals
from kg.vectors import consistency
from kg.store import Alias, Entity, IngestRun, Page, Passage, Redirect, Triple, open_knowledge_base, session_factory
from kgqa.errors import KgqaError
from kgqa.settings import Settings


class EntityNotFound(KgqaError):
    """No entity has this title, redirect or alias."""


def _open(settings: Settings):
    return open_knowledge_base(settings)


def kb_stats(settings: Settings) -> dict:
    engine = _open(settings)
    try:
        with session_factory(engine)() as session:
            def count(model, *where):
                return session.scalar(select(func.count()).select_from(model).where(*where)) or 0

            stats = {
                "pages": count(Page), "disambiguation_pages": count(Page, Page.is_disambiguation.is_(True)),
                "redirects": count(Redirect), "passages": count(Passage),
                "embedded_passages": count(Passage, Passage.embedded.is_(True)),
                "entities": count(Entity), "aliases": count(Alias), "triples": count(Triple),
                "infobox_triples": count(Triple, Triple.kind == "infobox"),
                "links_to_triples": count(Triple, Triple.kind == "links_to"),
                "in_category_triples": count(Triple, Triple.kind == "in_category"),
            }
            last = session.scalars(select(IngestRun).order_by(IngestRun.id.desc()).limit(1)).first()
            if last is not None:
                stats["last_run"] = f"#{last.id} {last.status} {last.started_at:%Y-%m-%d %H:%M:%S} {last.dump}"
            if inspect(session.connection()).has_table("removals"):  # made by the first sync or delete
                stats.update(last_removals(session))
            damaged = [problem.name for problem in index_files.damaged(settings.index_dir)]
            stats["damaged_index_files"] = ", ".join(damaged) + " (run `kgqa kg repair`)" if damaged else "none"
            index = _load_index(settings)
            stats["vectors"] = index.ntotal if index is not None else 0
            stats.update(_embedder_stats(index))
            stats.update(consistency(session, index))
    finally:
        engine.dispose()
    return stats


def _load_index(settings: Settings):
    if not settings.faiss_path.is_file():
        return None
    from kg.vector_index import VectorIndex

    try:
        return VectorIndex.load(settings.faiss_path, checked=True)
    except index_files.DamagedIndexFile:  # listed under damaged_index_files
        return None


def _embedder_stats(index) -> dict:
    """Which embedder made the index's vectors, as its record says."""
    if index is None:
        return {"embedder": "no index"}
    if index.embedder is None:
        return {"embedder": f"not recorded ({index.dim}-d; saved before indexes recorded their embedder, "
                            "recorded at the next ingest)"}
    return {"embedder": str(index.embedder), "embedder_fingerprint": index.embedder.fingerprint}


def show_entity(settings: Settings, name: str) -> EntityView:
    engine = _open(settings)
    try:
        with session_factory(engine)() as session:
            entity = resolve_entity(session, name)
            if entity is None:
                raise EntityNotFound(f"no entity named {name!r} (title, redirect or alias)")
            return entity_view(session, entity.entity_id)
    finally:
        engine.dispose()
