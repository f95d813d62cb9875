"""The passage catalog: what ranking needs to know about every passage, kept in memory.

Texts stay in SQL and are fetched only for the passages that are returned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PassageRef:
    passage_id: str
    vector_id: int
    page_id: int
    title: str
    section: str
    ordinal: int


class PassageCatalog:
    """Lookups by passage id, FAISS vector id and page (in reading order)."""

    def __init__(self, refs: Iterable[PassageRef]):
        self.by_id: dict[str, PassageRef] = {}
        self.by_vector: dict[int, PassageRef] = {}
        self.by_page: dict[int, list[PassageRef]] = {}
        self.by_title: dict[str, int] = {}
        for ref in refs:
            self.by_id[ref.passage_id] = ref
            self.by_vector[ref.vector_id] = ref
            self.by_page.setdefault(ref.page_id, []).append(ref)
            self.by_title.setdefault(ref.title, ref.page_id)
        for page_refs in self.by_page.values():
            page_refs.sort(key=lambda r: r.ordinal)

    def __len__(self) -> int:
        return len(self.by_id)

    def of_title(self, title: str) -> Sequence[PassageRef]:
        page_id = self.by_title.get(title)
        return self.by_page.get(page_id, []) if page_id is not None else []
