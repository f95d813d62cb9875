"""Split generated text into sentences, and read or write the citation markers in them.

A line break always ends a sentence. Abbreviations ("U.S.", "Dr."), initials
("George W. Bush") and decimals ("3.5") do not; markers the model put after the
full stop stay with the sentence they follow.
"""

from __future__ import annotations

import re

MARKER = re.compile(r"\[\s*(F?\d+)\s*\]", re.IGNORECASE)
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st mt jr sr vs etc inc ltd co corp no fig approx ca c e.g i.e u.s u.k u.s.a "
    "jan feb mar apr jun jul aug sep sept oct nov dec gen col lt sgt rev".split()
)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?:\s*\[\s*F?\d+\s*\])*")


def _ends_sentence(text: str, end_match: re.Match) -> bool:
    start, end = end_match.span()
    before = text[:start]
    rest = text[end:]
    if rest and not rest[0].isspace():
        return False  # "3.5", "U.S.A", "example.com"
    if text[start] == ".":
        word = re.search(r"([\w.]+)$", before)
        token = word.group(1).lower() if word else ""
        if token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha() and before[-1:].isupper()):
            return False  # "Dr. Smith", "George W. Bush"
    following = rest.lstrip()
    return not following or not following[0].islower()


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character offsets ``(start, end)`` of the sentences of running text (a passage), in order.

    ``text[start:end]`` is the sentence without surrounding white space. A line break
    ends a sentence: passages keep their paragraphs and list items on lines of their own.
    """
    spans = []
    line_start = 0
    for line in text.split("\n"):
        spans.extend((line_start + low, line_start + high) for low, high in _line_spans(line))
        line_start += len(line) + 1
    return spans


def _line_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    start = 0
    for match in _END.finditer(text):
        if _ends_sentence(text, match):
            spans.append((start, match.end()))
            start = match.end()
    spans.append((start, len(text)))
    trimmed = []
    for low, high in spans:
        while low < high and text[low].isspace():
            low += 1
        while high > low and text[high - 1].isspace():
            high -= 1
        if low < high and re.search(r"\w", text[low:high]):
            trimmed.append((low, high))
    return trimmed


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` in order, stripped; lines and bullets also separate sentences.

    A piece holding only markers (a "[2]" on its own line) joins the sentence before it.
    """
    pieces: list[str] = []
    for block in text.split("\n"):
        block = _BULLET.sub("", block)
        start = 0
        for match in _END.finditer(block):
            if _ends_sentence(block, match):
                pieces.append(block[start : match.end()].strip())
                start = match.end()
        pieces.append(block[start:].strip())
    sentences: list[str] = []
    for piece in filter(None, pieces):
        if re.search(r"\w", MARKER.sub("", piece)):
            sentences.append(piece)
        elif sentences and MARKER.search(piece):
            sentences[-1] = f"{sentences[-1]} {piece}"
    return sentences


def markers_in(sentence: str) -> list[str]:
    """Citation ids written in ``sentence`` ("1", "F2"), in order, without repeats."""
    return list(dict.fromkeys(m.upper() for m in MARKER.findall(sentence)))


def strip_markers(sentence: str) -> str:
    """The sentence without citation markers, spacing repaired."""
    text = MARKER.sub("", sentence)
    text = re.sub(r"\s+([.,;:!?])", r"\1", text)
    return re.sub(r"\s{2,}", " ", text).strip()


def with_markers(sentence: str, ids: list[str]) -> str:
    """``sentence`` with markers placed before its final punctuation: "… Montgomery [F1]."."""
    text = strip_markers(sentence)
    if not ids:
        return text
    marks = "".join(f"[{i}]" for i in ids)
    match = re.search(r"[.!?…]+[\"'”’)]*$", text)
    if match:
        return f"{text[: match.start()]} {marks}{text[match.start():]}"
    return f"{text} {marks}"
