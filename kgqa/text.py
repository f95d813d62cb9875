"""Shared lexical helpers: one tokenizer for BM25, fact ranking and attribution.

They live at the bottom layer so that the BM25 index built at ingest (kg/sparse_index.py)
and the queries retrieval runs against it tokenize alike.

A light plural folding stands in for a stemmer so that "capitals" meets
"capital" without another dependency; it is the same on both sides of every
comparison, which is all that matters.
"""

from __future__ import annotations

import re
from collections.abc import Collection

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")

STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves also s t don did does whose many much tell name named called known""".split()
)


def fold(word: str) -> str:
    """Lower-case and fold simple English plurals and possessives; a stopword stays as it is ("does", not "doe")."""
    word = word.lower().replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    if word in STOPWORDS:
        return word
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """Every word of ``text``, folded, stopwords kept (entity matching needs them)."""
    return [fold(w) for w in _WORD.findall(text)]


def without_words(text: str, folded: Collection[str]) -> str:
    """``text`` with every word whose folded form is in ``folded`` taken out (the rest as written)."""
    return _WORD.sub(lambda match: "" if fold(match.group(0)) in folded else match.group(0), text)


def content_words(text: str) -> list[str]:
    """Folded words without stopwords or one-letter tokens: what BM25 and overlap scores use."""
    return [w for w in words(text) if w not in STOPWORDS and len(w) > 1]


def numbers(text: str) -> set[str]:
    """Numbers as written, without thousands separators, so "1,819" meets "1819"."""
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


# Cardinal numbers written as words. Wikipedia's Manual of Style spells out integers from
# zero to nine and round numbers ("three million", "only five students"), so a count is as
# often a word as digits.
NUMBER_WORDS = frozenset(
    """zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen
    sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred
    thousand million billion trillion dozen""".split()
)


def number_words(text: str) -> set[str]:
    """The cardinal numbers ``text`` spells out ("five", "three million" gives both words)."""
    return {w.lower() for w in _WORD.findall(text) if w.lower() in NUMBER_WORDS}


class ContentWordCoder:
    """``content_words`` as vocabulary ids, folded once per distinct raw word: how a whole corpus is indexed.

    ``vocab`` maps each content word to its id, in order of first appearance. Folding is
    memoised by raw word, which makes encoding several times faster than calling
    ``content_words`` on each text, with the same words out.
    """

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self._raw: dict[str, int] = {}  # raw word -> id, or -1 where the folded word is dropped

    def encode(self, text: str) -> list[int]:
        ids = []
        for raw in _WORD.findall(text):
            at = self._raw.get(raw)
            if at is None:
                word = fold(raw)
                at = self.id(word) if word not in STOPWORDS and len(word) > 1 else -1
                self._raw[raw] = at
            if at >= 0:
                ids.append(at)
        return ids

    def id(self, word: str) -> int:
        """The id of ``word`` (given one if new)."""
        return self.vocab.setdefault(word, len(self.vocab))
