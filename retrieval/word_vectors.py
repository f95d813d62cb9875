"""Word similarity by meaning, from the embedder's vectors of single words.

Relation words are matched this way rather than through tables of cue words, so a
question phrased outside any vocabulary still finds its relation: with
all-MiniLM-L6-v2, born ~ birth 0.84, married ~ spouse 0.82, wrote ~ author 0.66,
against born ~ death 0.38.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable

import numpy as np


class WordVectors:
    """Word similarity by meaning: the embedder's vectors of single words, cached (thread-safe LRU)."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray] | None, *, size: int = 50_000):
        self._encode = encode
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def _vectors(self, words: Iterable[str]) -> dict[str, np.ndarray]:
        wanted = list(dict.fromkeys(words))
        with self._lock:
            missing = [w for w in wanted if w not in self._cache]
        if missing and self._encode is not None:
            encoded = self._encode(missing)
            with self._lock:
                for word, vector in zip(missing, encoded):
                    self._cache[word] = np.asarray(vector, dtype=np.float32)
                while len(self._cache) > self._size:
                    self._cache.popitem(last=False)
        with self._lock:
            return {w: self._cache[w] for w in wanted if w in self._cache}

    def best_match(self, word: str, candidates: Iterable[str]) -> tuple[float, str]:
        """The candidate closest in meaning to ``word`` and its cosine (1.0 for the same folded word)."""
        candidates = list(dict.fromkeys(candidates))
        if word in candidates:
            return 1.0, word
        if not candidates or self._encode is None:
            return 0.0, ""
        vectors = self._vectors([word, *candidates])
        if word not in vectors:
            return 0.0, ""
        best, best_word = 0.0, ""
        for candidate in candidates:
            if candidate in vectors:
                score = float(vectors[word] @ vectors[candidate])
                if score > best:
                    best, best_word = score, candidate
        return best, best_word
