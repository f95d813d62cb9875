"""Helpers shared by the kg tests: tiny hand-written dumps and KB snapshots."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

from sqlalchemy import select

from kg.store import Alias, Page, Passage, Triple, make_engine, session_factory

HEADER = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="en">\n'
          "<siteinfo><sitename>Wikipedia</sitename></siteinfo>\n")


def page_xml(page_id: int, title: str, rev_id: int, text: str, *, ns: int = 0, redirect: str | None = None) -> str:
    redirect_tag = f'<redirect title="{escape(redirect)}" />' if redirect else ""
    return (f"<page><title>{escape(title)}</title><ns>{ns}</ns><id>{page_id}</id>{redirect_tag}"
            f"<revision><id>{rev_id}</id><timestamp>2020-01-0{rev_id % 9 + 1}T00:00:00Z</timestamp>"
            f'<text xml:space="preserve">{escape(text)}</text></revision></page>\n')


def write_dump(path: Path, pages: list[str]) -> Path:
    path.write_text(HEADER + "".join(pages) + "</mediawiki>\n", encoding="utf-8")
    return path


def snapshot(settings) -> dict:
    """Everything a re-ingest must leave alone: pages, passages, triples, aliases and the index ids."""
    from kg.vector_index import VectorIndex

    engine = make_engine(settings.database_url)
    with session_factory(engine)() as session:
        state = {
            "pages": sorted(session.execute(select(Page.page_id, Page.rev_id, Page.title)).all()),
            "passages": sorted(session.execute(select(Passage.id, Passage.vector_id, Passage.embedded)).all()),
            "triples": sorted(session.execute(select(Triple.subject_id, Triple.predicate, Triple.object_title,
                                                     Triple.object_literal, Triple.kind, Triple.rev_id)).all()),
            "aliases": sorted(session.execute(select(Alias.norm, Alias.entity_id, Alias.source)).all()),
        }
    engine.dispose()
    index = VectorIndex.load(settings.faiss_path)
    state["vector_ids"] = sorted(index.ids().tolist())
    return state


def assert_consistent(state: dict) -> None:
    """Every passage embedded, and the index holds exactly the passages' vector ids."""
    assert state["passages"], "no passages"
    assert all(embedded for _, _, embedded in state["passages"])
    assert state["vector_ids"] == sorted(vid for _, vid, _ in state["passages"])
    assert len({pid for pid, _, _ in state["passages"]}) == len(state["passages"])
