"""Section-aware passages of roughly 100-250 words with stable ids.

Passages never cross a section boundary. Paragraphs are packed greedily up to
``MAX_WORDS``; a longer paragraph is split at sentence ends; a short tail is
folded into the passage before it. The id ``page:rev:section:ordinal`` only
changes when the page's revision does, so re-ingesting never shuffles ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kg.infobox import tidy
from kg.wikitext import Section

MIN_WORDS = 100
MAX_WORDS = 250
MIN_KEPT_WORDS = 8  # shorter leftovers (a lone caption, a stub section) are noise
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“(])")


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


def _units(paragraph: str) -> list[str]:
    """A paragraph as pieces of at most MAX_WORDS words, cut at sentence ends where possible."""
    if len(paragraph.split()) <= MAX_WORDS:
        return [paragraph]
    units: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        words = sentence.split()
        units.extend(" ".join(words[i:i + MAX_WORDS]) for i in range(0, len(words), MAX_WORDS))
    return units


def _pack(units: list[str]) -> list[str]:
    chunks: list[list[str]] = []
    counts: list[int] = []
    for unit in units:
        words = len(unit.split())
        if chunks and counts[-1] + words <= MAX_WORDS:
            chunks[-1].append(unit)
            counts[-1] += words
        else:
            chunks.append([unit])
            counts.append(words)
    if len(chunks) > 1 and counts[-1] < MIN_WORDS and counts[-2] + counts[-1] <= MAX_WORDS + MIN_WORDS // 2:
        chunks[-2].extend(chunks.pop())
    return [" ".join(chunk) for chunk in chunks]


def section_passages(section: Section, first_ordinal: int) -> list[PassageDraft]:
    """The passages of one section, numbered from ``first_ordinal`` within the page."""
    paragraphs: list[tuple[str, list[tuple[str, str]]]] = []  # (clean text, [(target, label)])
    start = 0
    for match in list(_PARAGRAPH_BREAK.finditer(section.text)) + [None]:
        end = match.start() if match else len(section.text)
        clean = tidy(section.text[start:end])
        if clean:
            links = [(link.target, tidy(section.text[link.start:link.end]))
                     for link in section.links if start <= link.start < end]
            paragraphs.append((clean, links))
        start = match.end() if match else end
    units = [unit for clean, _ in paragraphs for unit in _units(clean)]
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
