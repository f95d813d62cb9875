"""Entity linking: find the question's mentions of knowledge-graph entities by title or alias.

Spans of the question are folded with the same ``normalize_alias`` that
ingestion used for the ``aliases`` table, looked up, and chosen longest first
without overlaps, so "Animal Farm" wins over "Animal" and "Farm".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kgqa.records import LinkedEntity
from retrieval.text import STOPWORDS

_TOKEN = re.compile(r"[^\W_]+(?:[-'’.&/][^\W_]+)*\.?", re.UNICODE)
# Which kind of alias wins when one name points at several entities.
_SOURCE_RANK = {"title": 0, "redirect": 1, "bold": 2, "disambiguator": 3}


@dataclass(frozen=True)
class AliasEntry:
    """One row of the alias table, denormalised with the entity it names."""

    norm: str
    alias: str
    entity_id: int
    title: str
    source: str
    is_disambiguation: bool = False


class EntityLinker:
    """Longest-match-first linker over an in-memory alias dictionary."""

    def __init__(
        self,
        aliases: Iterable[AliasEntry],
        normalize: Callable[[str], str],
        url_for: Callable[[str], str],
        *,
        popularity: dict[int, float] | None = None,
        max_span_tokens: int = 10,
    ):
        self._normalize = normalize
        self._url_for = url_for
        self._popularity = popularity or {}
        self._by_norm: dict[str, list[AliasEntry]] = {}
        longest = 1
        for entry in aliases:
            if not entry.norm:
                continue
            self._by_norm.setdefault(entry.norm, []).append(entry)
            longest = max(longest, len(entry.norm.split()))
        self._max_span = min(longest, max_span_tokens)
        for norm, entries in self._by_norm.items():
            entries.sort(key=self._preference)

    def _preference(self, entry: AliasEntry) -> tuple:
        return (
            entry.is_disambiguation,
            _SOURCE_RANK.get(entry.source, 9),
            -self._popularity.get(entry.entity_id, 0.0),
            entry.entity_id,
        )

    def __len__(self) -> int:
        return len(self._by_norm)

    def link(self, question: str) -> list[LinkedEntity]:
        """Entities mentioned in ``question``, in order of appearance, one per entity."""
        tokens = [(m.start(), m.end(), m.group().rstrip(".") or m.group()) for m in _TOKEN.finditer(question)]
        all_lower = question == question.lower()
        candidates: list[tuple[int, int, AliasEntry, str]] = []  # (start token, length, entry, mention)
        for start in range(len(tokens)):
            for length in range(min(self._max_span, len(tokens) - start), 0, -1):
                span = tokens[start : start + length]
                mention = question[span[0][0] : span[-1][1]].rstrip(".")
                entries = self._by_norm.get(self._normalize(mention))
                if entries and self._plausible(span, all_lower):
                    candidates.append((start, length, entries[0], mention))
                    break  # the longest match starting here is enough
        candidates.sort(key=lambda c: (-c[1], c[0]))
        taken: set[int] = set()
        chosen: list[tuple[int, AliasEntry, str]] = []
        for start, length, entry, mention in candidates:
            positions = set(range(start, start + length))
            if positions & taken:
                continue
            taken |= positions
            chosen.append((start, entry, mention))
        chosen.sort(key=lambda c: c[0])
        linked: list[LinkedEntity] = []
        seen: set[int] = set()
        for _start, entry, mention in chosen:
            if entry.entity_id in seen:
                continue
            seen.add(entry.entity_id)
            linked.append(
                LinkedEntity(
                    entity_id=entry.entity_id,
                    title=entry.title,
                    mention=mention,
                    alias=entry.alias,
                    url=self._url_for(entry.title),
                )
            )
        return linked

    @staticmethod
    def _plausible(span: list[tuple[int, int, str]], all_lower: bool) -> bool:
        """Reject mentions made only of stopwords, and lone lower-case common words in a cased question."""
        words = [text for _s, _e, text in span]
        content = [w for w in words if w.lower() not in STOPWORDS]
        if not content:
            return False
        if all_lower or len(content) >= 2:
            return True
        return any(w[0].isupper() or any(ch.isdigit() for ch in w) for w in content)
