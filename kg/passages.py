"""Section-aware passages of roughly 100-250 words with stable ids.

Passages never cross a section boundary. Paragraphs are packed greedily up to
``MAX_WORDS``; a longer paragraph is split at sentence ends; a short tail is
folded into the passage before it. The id ``page:rev:section:ordinal`` only
changes when the page's revision does, so re-ingesting never shuffles ids.

A passage keeps its blocks apart: each paragraph, and each list item within one,
starts a line of its own (``\n``), so a list of "Aberdeen Hall, a school in Kelowna"
items is read as items, not as one run-on sentence. Line breaks are white space to
word counts, so they move no passage boundary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kg.infobox import tidy
from kg.wikitext import LINE_MARK, Section

MIN_WORDS = 100
MAX_WORDS = 250
MIN_KEPT_WORDS = 8  # shorter leftovers (a lone caption, a stub section) are noise
_PARAGRAPH_BREAK = re.compile(rf"\n[\s{LINE_MARK}]*\n")  # a blank line, line marks or not
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“(])")
_WORD = re.compile(r"\S+")
_AT_MARK = re.compile(rf"\s*(?:{LINE_MARK}\s*)+")


@dataclass
class PassageDraft:
    """A passage before it is stored; ``links`` are the targets whose labels it contains."""

    section_ordinal: int
    ordinal: int
    section: str
    text: str
    links: list[str] = field(default_factory=list)


def passage_id(page_id: int, rev_id: int, section_ordinal: int, ordinal: int) -> str:
    return f"{page_id}:{rev_id}:{section_ordinal}:{ordinal}"


def article_of(passage_id: str) -> str:
    """The page field of a passage id: equal for the passages of one article."""
    return passage_id.split(":", 1)[0]


def _tidy_lines(raw: str) -> str:
    """``tidy()`` over a paragraph, its list items kept on lines of their own."""
    return _AT_MARK.sub("\n", tidy(raw)).strip()


def _units(paragraph: str) -> list[str]:
    """A paragraph as pieces of at most MAX_WORDS words, cut at sentence ends where possible.

    Line breaks inside a piece are kept; the pieces are the words ``paragraph.split()`` counts.
    """
    if len(paragraph.split()) <= MAX_WORDS:
        return [paragraph]
    units: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        spans = [match.span() for match in _WORD.finditer(sentence)]
        for first in range(0, len(spans), MAX_WORDS):
            last = spans[min(first + MAX_WORDS, len(spans)) - 1]
            units.append(sentence[spans[first][0]:last[1]])
    return units


def _pack(units: list[tuple[str, bool]]) -> list[str]:
    """Greedy packing of ``(text, starts_a_paragraph)`` units; a paragraph starts a new line."""
    chunks: list[list[tuple[str, bool]]] = []
    counts: list[int] = []
    for unit in units:
        words = len(unit[0].split())
        if chunks and counts[-1] + words <= MAX_WORDS:
            chunks[-1].append(unit)
            counts[-1] += words
        else:
            chunks.append([unit])
            counts.append(words)
    if len(chunks) > 1 and counts[-1] < MIN_WORDS and counts[-2] + counts[-1] <= MAX_WORDS + MIN_WORDS // 2:
        chunks[-2].extend(chunks.pop())
    return [_join(chunk) for chunk in chunks]


def _join(chunk: list[tuple[str, bool]]) -> str:
    """One passage's units as its text: a paragraph starts a line, a piece of a long one goes on."""
    text = chunk[0][0]
    for unit, starts_a_paragraph in chunk[1:]:
        text += ("\n" if starts_a_paragraph else " ") + unit
    return text


def section_passages(section: Section, first_ordinal: int) -> list[PassageDraft]:
    """The passages of one section, numbered from ``first_ordinal`` within the page."""
    paragraphs: list[tuple[str, list[tuple[str, str]]]] = []  # (clean text, [(target, label)])
    start = 0
    for match in list(_PARAGRAPH_BREAK.finditer(section.text)) + [None]:
        end = match.start() if match else len(section.text)
        clean = _tidy_lines(section.text[start:end])
        if clean:
            links = [(link.target, tidy(section.text[link.start:link.end]))
                     for link in section.links if start <= link.start < end]
            paragraphs.append((clean, links))
        start = match.end() if match else end
    units = [(unit, i == 0) for clean, _ in paragraphs for i, unit in enumerate(_units(clean))]
    drafts: list[PassageDraft] = []
    for text in _pack(units):
        if len(text.split()) >= MIN_KEPT_WORDS:
            drafts.append(PassageDraft(section.ordinal, first_ordinal + len(drafts), section.path, text))
    for _, links in paragraphs:
        for target, label in links:
            home = next((d for d in drafts if label and label in d.text), None)
            if home is not None and target not in home.links:
                home.links.append(target)
    return drafts
