"""Read access to the knowledge base for the views: one SQL session per request, closed on teardown."""

from __future__ import annotations

import threading

from flask import current_app, g
from pydantic import BaseModel
from werkzeug.exceptions import NotFound

from kgqa.settings import Settings


class PassageView(BaseModel):
    """A passage as the API shows it: its text with the article, section and URL it came from."""

    passage_id: str
    page_id: int
    rev_id: int
    title: str
    section: str
    text: str
    url: str


class RequestSessions:
    """Lazily opens the SQL store; a SQLite file that does not exist means no KB (never create one here)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._factory = None
        self._lock = threading.Lock()

    def _session_factory(self):
        with self._lock:
            if self._factory is None:
                from kg.store import open_knowledge_base, session_factory

                self._factory = session_factory(open_knowledge_base(self.settings))
            return self._factory

    def request_session(self):
        """The current request's session, opened on first use."""
        if "kgqa_kb_session" not in g:
            g.kgqa_kb_session = self._session_factory()()
        return g.kgqa_kb_session

    @staticmethod
    def close_request_session(_exc: BaseException | None = None) -> None:
        session = g.pop("kgqa_kb_session", None)
        if session is not None:
            session.close()


def _kb() -> RequestSessions:
    return current_app.extensions["kgqa_kb"]


def find_entity(name: str):
    """The entity view for a title, alias or redirect; 404 when unknown."""
    from kg.queries import entity_view, resolve_entity

    session = _kb().request_session()
    entity = resolve_entity(session, name)
    view = entity_view(session, entity.entity_id) if entity is not None else None
    if view is None:
        raise NotFound(f"no entity named {name!r} in the knowledge base")
    return view


def find_passage(passage_id: str) -> PassageView:
    """A passage with its article URL; 404 when unknown."""
    from kg.queries import get_passage
    from kg.store import Page, wikipedia_url

    session = _kb().request_session()
    passage = get_passage(session, passage_id)
    if passage is None:
        raise NotFound(f"no passage {passage_id!r} in the knowledge base")
    page = session.get(Page, passage.page_id)
    return PassageView(
        passage_id=passage.id,
        page_id=passage.page_id,
        rev_id=passage.rev_id,
        title=passage.title,
        section=passage.section or "",
        text=passage.text,
        url=page.url if page is not None else wikipedia_url(passage.title),
    )
