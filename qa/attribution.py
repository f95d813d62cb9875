"""Attribute each answer sentence to the evidence that supports it, independently of the model.

Support mixes meaning and surface: the embedding cosine between sentence and
evidence, plus how much of what the sentence *adds* to the question (its new
content words, capitalised names and numbers) the evidence contains. A number
the evidence never mentions is the commonest invention of a small model, so it
halves the support.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from qa.sentences import markers_in, strip_markers
from qa.tuning import (
    CITATION_MARGIN,
    MARKER_THRESHOLD,
    MAX_CITATIONS,
    NAME_WEIGHT,
    RESTATEMENT_CREDIT,
    SEMANTIC_WEIGHT,
    SUPPORT_THRESHOLD,
    UNSEEN_NUMBER_FACTOR,
)
from retrieval.text import STOPWORDS, content_words, fold, numbers

_NAME = re.compile(r"\b[A-Z][\w'’-]*(?:\s+(?:of|the|de|von|van)?\s*[A-Z][\w'’-]*)*")


@dataclass(frozen=True)
class EvidenceItem:
    """One numbered piece of evidence as the attributor sees it."""

    id: str  # "1".."k" or "F1"..
    text: str


@dataclass
class Attribution:
    """One sentence, its support and the evidence ids that back it."""

    text: str  # without markers
    citations: list[str]
    support: float
    supported: bool
    written_markers: list[str] = field(default_factory=list)
    rejected_markers: list[str] = field(default_factory=list)


def names(text: str) -> set[str]:
    """Folded words of capitalised names, ignoring a capitalised stopword that opens a sentence."""
    found = set()
    for match in _NAME.finditer(text):
        for word in match.group().split():
            folded = fold(word)
            if folded not in STOPWORDS:
                found.add(folded)
    return found


def lexical_support(sentence: str, evidence: str, question: str) -> float:
    """Share of what the sentence adds to the question that the evidence contains, in [0, 1]."""
    q_words = set(content_words(question))
    ev_words = set(content_words(evidence))
    s_words = set(content_words(sentence))
    novel = s_words - q_words
    if not s_words:
        return 0.0
    if novel:
        coverage = len(novel & ev_words) / len(novel)
    else:  # restating the question adds nothing to check, and says nothing either
        coverage = RESTATEMENT_CREDIT * len(s_words & ev_words) / len(s_words)
    s_names = names(sentence) - q_words
    if s_names:
        coverage = (1 - NAME_WEIGHT) * coverage + NAME_WEIGHT * len(s_names & ev_words) / len(s_names)
    s_numbers = numbers(sentence)  # a year the question asks about must be in the evidence too
    if s_numbers and not s_numbers <= numbers(evidence):
        coverage *= UNSEEN_NUMBER_FACTOR
    return coverage


class Attributor:
    """Scores sentences against evidence; ``encode`` (texts -> L2-normalised rows) adds the semantic half."""

    def __init__(
        self,
        encode: Callable[[list[str]], np.ndarray] | None = None,
        *,
        threshold: float = SUPPORT_THRESHOLD,
        semantic_weight: float = SEMANTIC_WEIGHT,
        max_citations: int = MAX_CITATIONS,
    ):
        self._encode = encode
        self.threshold = threshold
        self.semantic_weight = semantic_weight if encode is not None else 0.0
        self.max_citations = max_citations

    def support_matrix(self, sentences: Sequence[str], evidence: Sequence[EvidenceItem], question: str) -> np.ndarray:
        """Support of every sentence (rows) by every evidence item (columns), in [0, 1]."""
        lexical = np.array(
            [[lexical_support(s, e.text, question) for e in evidence] for s in sentences], dtype=np.float32
        ).reshape(len(sentences), len(evidence))
        if not self.semantic_weight or not sentences or not evidence:
            return lexical
        vectors = self._encode(list(sentences) + [e.text for e in evidence])
        cosine = vectors[: len(sentences)] @ vectors[len(sentences) :].T
        semantic = np.clip(cosine, 0.0, 1.0)
        return (1 - self.semantic_weight) * lexical + self.semantic_weight * semantic

    def attribute(self, sentences: Sequence[str], evidence: Sequence[EvidenceItem], question: str) -> list[Attribution]:
        """Each sentence with the evidence that supports it; markers the model wrote are verified, not trusted."""
        clean = [strip_markers(s) for s in sentences]
        matrix = self.support_matrix(clean, evidence, question)
        ids = [e.id for e in evidence]
        results = []
        for row, (raw, text) in enumerate(zip(sentences, clean)):
            scores = matrix[row] if len(ids) else np.zeros(0)
            written = [m for m in markers_in(raw)]
            kept = [m for m in written if m in ids and scores[ids.index(m)] >= MARKER_THRESHOLD]
            rejected = [m for m in written if m not in kept]
            order = np.argsort(-scores, kind="stable")
            best = float(scores[order[0]]) if len(order) else 0.0
            found = [ids[i] for i in order if scores[i] >= self.threshold and scores[i] >= best - CITATION_MARGIN]
            citations = list(dict.fromkeys(kept + found))[: self.max_citations]
            support = max([best] + [float(scores[ids.index(m)]) for m in kept])
            results.append(
                Attribution(
                    text=text, citations=citations, support=round(support, 4),
                    supported=bool(citations), written_markers=written, rejected_markers=rejected,
                )
            )
        return results
