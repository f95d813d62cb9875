"""An attribution checker independent of the engine's own: does the cited evidence support a sentence?

No NLI model is available offline, so support is judged by two tests that both must pass:

1. every *key token* of the sentence (numbers, and capitalised words after the first
   word, i.e. the names and dates a sentence asserts) occurs in the evidence;
2. enough of its content words occur there: coverage >= ``min_coverage``, or
   coverage >= ``min_coverage_with_similarity`` when the sentence embedding is close
   to the evidence (cosine >= ``min_similarity``; only when an embedder is supplied).

Words match on a five-letter prefix so "wrote"/"written" differ but "capital"/"capitals"
meet. Citation recall and precision follow ALCE (Gao et al., 2023): a sentence is
supported when its citations jointly support it; a citation is precise when the
sentence is supported and the citation either supports it alone or is needed by the rest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

_WORD = re.compile(r"[^\W_]+(?:[.,'’][^\W_]+)*", re.UNICODE)
_MARKER = re.compile(r"\[(?:F?\d+)(?:\s*,\s*F?\d+)*\]")
_STOP = frozenset(
    """a an the of in on at to for from by with and or but is are was were be been being it its
    this that these those as which who whom whose what when where why how he she they them his her
    their there here has have had do does did not no so than then also into about after before
    during over under between i you we our your my me us will would can could may might one""".split()
)

Embed = Callable[[Sequence[str]], np.ndarray]  # texts -> L2-normalised rows


def strip_markers(text: str) -> str:
    """The sentence without its [1] / [F2] citation markers."""
    return " ".join(_MARKER.sub(" ", text).split())


def _tokens(text: str) -> list[str]:
    return _WORD.findall(text)


def _fold(token: str) -> str:
    token = token.lower().replace(",", "").replace("’", "'")
    return token[:-2] if token.endswith("'s") else token


def key_tokens(sentence: str) -> set[str]:
    """Numbers and names the sentence asserts (capitalised words after its first word)."""
    tokens = _tokens(strip_markers(sentence))
    keys = {_fold(t) for t in tokens if any(ch.isdigit() for ch in t)}
    keys |= {_fold(t) for t in tokens[1:] if t[:1].isupper() and _fold(t) not in _STOP}
    return keys


def content_words(text: str) -> list[str]:
    return [w for w in (_fold(t) for t in _tokens(strip_markers(text))) if w not in _STOP and len(w) > 1]


@dataclass
class SupportChecker:
    embed: Embed | None = None
    min_coverage: float = 0.6
    min_coverage_with_similarity: float = 0.34
    min_similarity: float = 0.55

    def supports(self, sentence: str, evidence: str) -> bool:
        """True when ``evidence`` supports ``sentence`` by the rules in the module docstring."""
        words = content_words(sentence)
        if not words or not evidence.strip():
            return False
        evidence_words = {_fold(t) for t in _tokens(evidence)}
        if not key_tokens(sentence) <= evidence_words:
            return False
        prefixes = {w[:5] for w in evidence_words}
        coverage = sum(1 for w in words if w in evidence_words or w[:5] in prefixes) / len(words)
        if coverage >= self.min_coverage:
            return True
        if self.embed is None or coverage < self.min_coverage_with_similarity:
            return False
        vectors = self.embed([strip_markers(sentence), evidence])
        return float(np.dot(vectors[0], vectors[1])) >= self.min_similarity


@dataclass
class SentenceJudgement:
    supported: bool
    citations: int
    precise: int


def judge_sentence(checker: SupportChecker, sentence: str, cited: Sequence[str]) -> SentenceJudgement:
    """ALCE's recall and precision bookkeeping for one answer sentence and its cited evidence texts."""
    if not cited:
        return SentenceJudgement(False, 0, 0)
    supported = checker.supports(sentence, "\n".join(cited))
    precise = 0
    if supported:
        for index, evidence in enumerate(cited):
            if checker.supports(sentence, evidence):
                precise += 1
                continue
            others = [e for i, e in enumerate(cited) if i != index]
            if not others or not checker.supports(sentence, "\n".join(others)):
                precise += 1
    return SentenceJudgement(supported, len(cited), precise)
