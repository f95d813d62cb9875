"""BM25 over passages with ``bm25s``: sparse scores computed in milliseconds at 100k passages.

The index keeps only what ranking needs (a passage key per document); texts
stay in the SQL store.
"""

from __future__ import annotations

from collections.abc import Sequence

from retrieval.text import content_words


class SparseIndex:
    """A BM25 index whose documents are identified by caller-chosen string keys."""

    def __init__(self, *, k1: float = 1.2, b: float = 0.75):
        self.k1 = k1
        self.b = b
        self._retriever = None
        self._keys: list[str] = []

    @property
    def size(self) -> int:
        return len(self._keys)

    def build(self, keys: Sequence[str], texts: Sequence[str]) -> "SparseIndex":
        """Index ``texts`` (one per key); an empty corpus gives an index that finds nothing."""
        import bm25s

        if len(keys) != len(texts):
            raise ValueError(f"{len(keys)} keys for {len(texts)} texts")
        self._keys = list(keys)
        if not self._keys:
            self._retriever = None
            return self
        tokens = [content_words(text) or ["<empty>"] for text in texts]
        retriever = bm25s.BM25(k1=self.k1, b=self.b)
        retriever.index(tokens, show_progress=False)
        self._retriever = retriever
        return self

    def search(self, query: str, k: int = 10) -> list[tuple[str, float]]:
        """The best ``k`` documents as (key, BM25 score), score > 0 only, best first."""
        terms = content_words(query)
        if self._retriever is None or not terms or k <= 0:
            return []
        k = min(k, len(self._keys))
        positions, scores = self._retriever.retrieve(
            [terms], k=k, show_progress=False, n_threads=1
        )
        return [
            (self._keys[int(pos)], float(score))
            for pos, score in zip(positions[0], scores[0])
            if score > 0
        ]
