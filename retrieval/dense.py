"""Dense retrieval: embed the question once and search the FAISS passage index by cosine."""

from __future__ import annotations

import numpy as np


class DenseRetriever:
    """Wraps an ``Embedder`` and a ``VectorIndex``; both are injected and already loaded or lazy."""

    def __init__(self, embedder, index):
        self._embedder = embedder
        self._index = index

    def encode(self, question: str) -> np.ndarray:
        return self._embedder.encode_query(question)

    def search(self, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The ``k`` nearest passages as (vector id, cosine), best first."""
        if self._index is None or k <= 0:
            return []
        scores, ids = self._index.search(np.asarray(query_vector, dtype=np.float32).reshape(1, -1), k)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
