"""BM25 over passages with ``bm25s``: sparse scores computed in milliseconds at 100k passages.

A knowledge base's index is built once from SQL (kg/sparse_index.py) and
memory-mapped here (``open``), so server processes share one copy; ``build``
indexes texts in memory, for small corpora. Either way the index keeps only what
ranking needs (a key per document); texts stay in the SQL store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kg.mapped_arrays import PackedStrings
from kg.sparse_index import B, EMPTY, K1, SparseArrays
from kgqa.text import content_words


class SparseIndex:
    """A BM25 index whose documents are identified by caller-chosen string keys."""

    def __init__(self, *, k1: float = K1, b: float = B):
        self.k1 = k1
        self.b = b
        self._retriever = None
        self._size = 0
        self._key: Callable[[int], str] = lambda at: ""
        self._word_ids: Callable[[list[str]], list[int]] = lambda words: []

    @property
    def size(self) -> int:
        return self._size

    def build(self, keys: Sequence[str], texts: Sequence[str]) -> "SparseIndex":
        """Index ``texts`` (one per key) in memory; an empty corpus gives an index that finds nothing."""
        import bm25s

        if len(keys) != len(texts):
            raise ValueError(f"{len(keys)} keys for {len(texts)} texts")
        keys = list(keys)
        self._size, self._key = len(keys), keys.__getitem__
        if not keys:
            self._retriever = None
            return self
        tokens = [content_words(text) or [EMPTY] for text in texts]
        retriever = bm25s.BM25(k1=self.k1, b=self.b)
        retriever.index(tokens, show_progress=False)
        self._retriever, self._word_ids = retriever, retriever.get_tokens_ids
        return self

    def open(self, arrays: SparseArrays, key: Callable[[int], str]) -> "SparseIndex":
        """The saved index of ``arrays``, memory-mapped; ``key`` names the document at a position."""
        import bm25s

        if arrays.scores["num_docs"] == 0:
            self._retriever, self._size = None, 0
            return self
        retriever = bm25s.BM25(k1=self.k1, b=self.b)
        retriever.scores = dict(arrays.scores)  # what bm25s.BM25.load_scores(mmap=True) maps
        retriever.nonoccurrence_array = None  # Lucene BM25 has none (only BM25L and BM25+ do)
        words = PackedStrings(arrays.vocab_bytes, arrays.vocab_offsets)
        self._retriever, self._size, self._key = retriever, arrays.scores["num_docs"], key
        self._word_ids = lambda terms: [at for at in map(words.find, terms) if at is not None]
        return self

    def search(self, query: str, k: int = 10) -> list[tuple[str, float]]:
        """The best ``k`` documents as (key, BM25 score), score > 0 only, best first."""
        terms = content_words(query)
        if self._retriever is None or not terms or k <= 0:
            return []
        ids = self._word_ids(terms)  # repeated words count again, unknown ones not at all, as bm25s does
        if not ids:
            return []
        scores = self._retriever.get_scores_from_ids(ids)
        positions = top_positions(scores, k)
        return [(self._key(int(at)), float(scores[at])) for at in positions]

    def scores_at(self, query: str, positions: Sequence[int]) -> list[float]:
        """The BM25 score of ``query`` for each document at ``positions`` (0 where it shares no word)."""
        terms = content_words(query)
        ids = self._word_ids(terms) if self._retriever is not None and terms else []
        if not ids or not len(positions):
            return [0.0] * len(positions)
        scores = self._retriever.get_scores_from_ids(ids)
        return [float(scores[at]) for at in positions]


def top_positions(scores, k: int):
    """Positions of the ``k`` best positive scores, best first (ties: lower position first).

    Only documents holding a query word score above zero, a few percent of a large
    corpus, so selection runs over those: at 290k passages bm25s's own ``topk`` took
    46 ms a query on the whole array, this takes under 1 ms (bench/scale.py).
    """
    import numpy as np

    candidates = np.flatnonzero(scores > 0)
    if len(candidates) > k:
        candidates = candidates[np.argpartition(-scores[candidates], k - 1)[:k]]
    return candidates[np.lexsort((candidates, -scores[candidates]))]
