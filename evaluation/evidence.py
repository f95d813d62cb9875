"""Full evidence text behind a citation, read from the SQL store, so the support check sees what the LM saw."""

from __future__ import annotations

from kg.store import Entity, Passage, Triple, make_engine, session_factory
from kgqa.records import Citation
from kgqa.settings import Settings


def citation_fallback_text(citation: Citation) -> str:
    """What the citation itself carries: enough when the store is not at hand."""
    return f"{citation.title}. {citation.snippet}"


class StoreEvidence:
    """Looks up the passage text or the fact (subject, predicate, object) a citation points at."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._sessions = None
        self._cache: dict[str, str] = {}

    def _session(self):
        if self._sessions is None:
            self._sessions = session_factory(make_engine(self._settings.database_url))
        return self._sessions()

    def __call__(self, citation: Citation) -> str:
        key = citation.passage_id or f"triple:{citation.triple_id}"
        if key not in self._cache:
            self._cache[key] = self._lookup(citation)
        return self._cache[key]

    def _lookup(self, citation: Citation) -> str:
        with self._session() as session:
            if citation.kind == "passage" and citation.passage_id:
                passage = session.get(Passage, citation.passage_id)
                if passage is not None:
                    return f"{passage.title}. {passage.section}. {passage.text}"
            if citation.kind == "fact" and citation.triple_id is not None:
                triple = session.get(Triple, citation.triple_id)
                if triple is not None:
                    subject = session.get(Entity, triple.subject_id)
                    name = subject.title if subject else citation.title
                    obj = triple.object_title or triple.object_literal
                    return f"{name} {triple.predicate.replace('_', ' ')} {triple.field.replace('_', ' ')}: {obj}."
        return citation_fallback_text(citation)
