"""The passage catalog: what ranking needs to know about every passage, as memory-mapped columns.

The columns are built with the BM25 index (kg/sparse_index.py), one row per
passage in (page, ordinal) order, and shared by every process through the page
cache. Titles, sections and texts stay in SQL and are fetched only for the
passages that are returned.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kg.mapped_arrays import PackedStrings
from kg.sparse_index import SparseArrays


@dataclass(frozen=True)
class PassageRef:
    passage_id: str
    vector_id: int
    page_id: int
    ordinal: int


class PassageCatalog:
    """Lookups by passage id, FAISS vector id, page and page title (a page's passages in reading order)."""

    def __init__(self, arrays: SparseArrays | None = None):
        arrays = SparseArrays.empty() if arrays is None else arrays
        self._vector_ids, self._page_ids, self._ordinals = arrays.vector_ids, arrays.page_ids, arrays.ordinals
        self._vector_order = arrays.vector_order
        self._ids = PackedStrings(arrays.id_bytes, arrays.id_offsets, order=arrays.id_order)
        self._titles = PackedStrings(arrays.title_bytes, arrays.title_offsets)
        self._title_pages = arrays.title_pages
        self.by_id: Mapping[str, PassageRef] = _Lookup(self._ids.find, self.ref, self._ids.__getitem__, len(self))
        self.by_vector: Mapping[int, PassageRef] = _Lookup(
            self._position_of_vector, self.ref, lambda at: int(self._vector_ids[at]), len(self))

    def __len__(self) -> int:
        return len(self._vector_ids)

    def passage_id(self, position: int) -> str:
        return self._ids[position]

    def ref(self, position: int) -> PassageRef:
        return PassageRef(self._ids[position], int(self._vector_ids[position]), int(self._page_ids[position]),
                          int(self._ordinals[position]))

    def of_page(self, page_id: int) -> list[PassageRef]:
        """The page's passages in reading order."""
        start, end = np.searchsorted(self._page_ids, [page_id, page_id + 1])
        return [self.ref(at) for at in range(int(start), int(end))]

    def of_title(self, title: str) -> Sequence[PassageRef]:
        at = self._titles.find(title)
        return self.of_page(int(self._title_pages[at])) if at is not None else []

    def positions_of_title(self, title: str) -> range:
        """The catalog positions (the BM25 index's documents) of the article's passages, in reading order."""
        at = self._titles.find(title)
        if at is None:
            return range(0)
        page_id = int(self._title_pages[at])
        start, end = np.searchsorted(self._page_ids, [page_id, page_id + 1])
        return range(int(start), int(end))

    def _position_of_vector(self, vector_id: int) -> int | None:
        order, ids = self._vector_order, self._vector_ids
        rank = bisect.bisect_left(range(len(order)), vector_id, key=lambda r: int(ids[order[r]]))
        return int(order[rank]) if rank < len(order) and int(ids[order[rank]]) == vector_id else None


class _Lookup(Mapping):
    """A read-only mapping over catalog positions: key -> position by ``find``, position -> value by ``value``."""

    def __init__(self, find: Callable[[object], int | None], value: Callable[[int], PassageRef],
                 key: Callable[[int], object], size: int):
        self._find, self._value, self._key, self._size = find, value, key, size

    def __getitem__(self, key) -> PassageRef:
        at = self._find(key)
        if at is None:
            raise KeyError(key)
        return self._value(at)

    def __contains__(self, key) -> bool:
        return self._find(key) is not None

    def __iter__(self) -> Iterator:
        return (self._key(at) for at in range(self._size))

    def __len__(self) -> int:
        return self._size
