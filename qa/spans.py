"""Short answers copied from the evidence: candidate spans of one sentence, scored by the LM.

A span is a run of words of one evidence sentence, kept exactly as written with
its character offsets, so what is shown stands in the cited text by construction.
Candidates are runs of up to ``SPAN_MAX_WORDS`` words that do not cross a clause
mark, start and end on a content word or number that is not one of the question's
or the article title's own words, add something to the question
(a span that repeats the question's subject or words is no answer) and are of the
kind the question asks for (a number for "how many", a name for "who").

The LM then reads each candidate as the start of its answer to a prompt holding
the question and that one sentence: log P(span, then the end of the answer),
normalised by length. The pointwise-mutual-information variant subtracts the
same score under a prompt without the question, so a span the model merely
likes to copy from the sentence does not win.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kgqa.text import STOPWORDS, content_words, fold, numbers
from qa.claims import FUNCTION_WORDS, QuestionFrame, names
from qa.tuning import SPAN_MAX_WORDS, SPAN_STARTS

# Words, numbers (with their separators), and single punctuation marks, each with its offsets.
_PIECE = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+(?:['’\-][^\W_]+)*|[^\w\s]", re.UNICODE)
# A comma may stand inside a span ("ants, termites and beetles"); any other mark ends it.
_INSIDE = frozenset({",", "-", "–", "&"})
_EDGE_WORDS = STOPWORDS | FUNCTION_WORDS
_MONTHS = frozenset(["january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"])

SPAN_SYSTEM = "Answer the question with the exact words of the text, as briefly as possible."


@dataclass(frozen=True)
class Span:
    """A candidate answer: ``sentence[start:end] == text``."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class ScoredSpan:
    span: Span
    logprob: float  # log P(the span, then the end of the answer | question and sentence)
    tokens: int  # tokens scored: the span's and the end's
    baseline: float  # the same log P under the prompt without the question

    def value(self, kind: str) -> float:
        """``total``: log P of the whole answer; ``mean``: per token; ``pmi``: what the question adds to it."""
        if kind == "pmi":
            return self.logprob - self.baseline
        if kind == "mean":
            return self.logprob / self.tokens
        return self.logprob


def _pieces(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in _PIECE.finditer(text)]


def _is_word(piece: str) -> bool:
    return piece[0].isalnum()


def _edge(piece: str) -> bool:
    """A span starts and ends on a number or a content word, never on "the", "of", "and"."""
    return piece[0].isdigit() or (piece[0].isalpha() and fold(piece) not in _EDGE_WORDS and len(piece) > 1)


def _of_kind(text: str, frame: QuestionFrame) -> bool:
    """Whether the span holds something of the kind the question asks for."""
    kind = frame.answer_type
    found = numbers(text) - frame.numbers
    if kind == "date":
        return any(len(n) in (3, 4) and n.isdigit() for n in found) or bool(
            found and _MONTHS & {w.lower() for w in re.findall(r"[A-Za-z]+", text)})
    if kind == "number":
        return bool(found)
    if kind in ("name", "place"):
        return bool(names(text) - frame.words - frame.subject_words)
    return True


def _adds(text: str, frame: QuestionFrame, title_words: frozenset[str]) -> bool:
    """Whether the span says something the question does not: not its subject, its words or the article's title."""
    new = set(content_words(text)) - frame.words - frame.subject_words - title_words
    return bool(new or (numbers(text) - frame.numbers))


def enumerate_spans(sentence: str, frame: QuestionFrame, *, title: str = "",
                    max_words: int = SPAN_MAX_WORDS) -> list[Span]:
    """Every candidate answer span of ``sentence`` for the question ``frame``, in sentence order."""
    pieces = _pieces(sentence)
    title_words = frozenset(content_words(title))
    # An answer neither begins nor ends with the question's own words ("Achilles was born in 1250").
    known = frame.words | frame.subject_words | title_words

    def edge(piece: str) -> bool:
        return _edge(piece) and fold(piece) not in known

    found = []
    for i, (first, start, _) in enumerate(pieces):
        if not edge(first):
            continue
        used = 0
        for piece, _, end in pieces[i:]:
            if not _is_word(piece) and piece not in _INSIDE:
                break
            if _is_word(piece):
                used += 1
                if used > max_words:
                    break
                if edge(piece):
                    text = sentence[start:end]
                    if _adds(text, frame, title_words) and _of_kind(text, frame):
                        found.append(Span(text, start, end))
    return found


def span_messages(question: str | None, sentence: str) -> list[dict]:
    """The scoring prompt: the one sentence and the question (none: the PMI baseline)."""
    user = f"Text: {sentence}" + (f"\nQuestion: {question}" if question else "")
    return [{"role": "system", "content": SPAN_SYSTEM}, {"role": "user", "content": user}]

Score = Callable[[Sequence[dict], list[str]], list]  # a generator's ``score(messages, continuations)``


class SpanScorer:
    """The LM's scores of a sentence's candidate spans for a question, cached (thread-safe LRU).

    Only the ``SPAN_STARTS`` words the LM likeliest starts its answer with are scored
    further. Spans that start at the same word share one scored continuation: the
    sentence from that word on, up to the longest candidate, whose token-by-token scores
    give every shorter candidate (``Scored.prefix``).
    """

    def __init__(self, score: Score, *, size: int = 2048):
        self._score = score
        self._cache: OrderedDict[tuple, list[ScoredSpan]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def scored(self, question: str, sentence: str, spans: Sequence[Span]) -> list[ScoredSpan]:
        key = (question, sentence, tuple(spans))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        result = self._compute(question, sentence, spans)
        with self._lock:
            self._cache[key] = result
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return result

    def _compute(self, question: str, sentence: str, spans: Sequence[Span]) -> list[ScoredSpan]:
        if not spans:
            return []
        longest: dict[int, int] = {}
        for span in spans:
            longest[span.start] = max(longest.get(span.start, 0), span.end)
        starts = sorted(longest)
        if len(starts) > SPAN_STARTS:
            # The word the answer starts with, as the LM reads it after the question, keeps the likeliest starts.
            firsts = [_PIECE.match(sentence, s).group() for s in starts]
            first = self._score(span_messages(question, sentence), firsts)
            starts = sorted(sorted(starts, key=lambda s: -first[starts.index(s)].logprobs[0])[:SPAN_STARTS])
        texts = [sentence[s:longest[s]] for s in starts]
        asked = dict(zip(starts, self._score(span_messages(question, sentence), texts)))
        plain = dict(zip(starts, self._score(span_messages(None, sentence), texts)))
        result = []
        for span in spans:
            if span.start not in asked:
                continue
            with_question = asked[span.start].prefix(span.end - span.start)
            without = plain[span.start].prefix(span.end - span.start)
            if with_question is None or without is None:
                continue  # the span ends inside a token of the longer text: not scorable as itself
            result.append(ScoredSpan(span, with_question[0], with_question[1], without[0]))
        return result
