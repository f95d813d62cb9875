"""Infobox parameters as facts: normalised key, and a linked entity or a cleaned literal per value item.

A value is rendered with the same renderer as prose, so template-wrapped values
(``{{Birth date|1879|3|14}}``, ``{{hlist|...}}``, ``{{plainlist}}`` bullets,
``{{nowrap|...}}``, ``{{small|...}}``) keep their text, and ``<ref>`` content is
dropped before any text is extracted. List values become one fact per item.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mwparserfromhell.nodes import Template

from kg.wikitext import Renderer

# Keys whose values are pictures, layout or map plumbing rather than facts.
SKIPPED_KEYS = re.compile(
    r"^(image|img|logo|seal|flag|coat|map|caption|alt|signature|footnote|pushpin|coordinates|"
    r"lat|long|coor|module|embed|child|width|size|upright|border|float|bodyclass|label_|"
    r"blank|website$|url|iso|dot_|mapsize|imagesize|onlysourced|qid|pronunciation)"
)
FILE_VALUE = re.compile(r"\.(jpe?g|png|svg|gif|tiff?|webp)$", re.IGNORECASE)
_PARENTHETICAL = re.compile(r"\([^()]*\)")
_SPACES = re.compile(r"[ \t\xa0\u200b]+")
MAX_LITERAL_CHARS = 300


@dataclass(frozen=True)
class InfoboxFact:
    """``object_title`` is set for a linked entity, else ``literal`` holds the value."""

    predicate: str
    field: str
    object_title: str | None
    literal: str


def normalize_key(key: str) -> str:
    """``Birth Date`` / ``birth-date`` / ``birth_date`` -> ``birth_date``."""
    return re.sub(r"[^0-9a-z]+", "_", key.strip().lower()).strip("_")


def tidy(text: str) -> str:
    """Collapse spacing and drop brackets or separators left empty by removed markup."""
    text = _SPACES.sub(" ", text.replace("\n", " "))
    text = re.sub(r"\(\s*[,;:]?\s*\)", "", text)
    text = re.sub(r"\s+([,.;:!?)])", r"\1", text)
    text = re.sub(r"\(\s+", "(", text)
    return _SPACES.sub(" ", text).strip(" ,;:-–")


def _item_fact(predicate: str, key: str, text: str, links) -> InfoboxFact | None:
    literal = tidy(text.lstrip("*#:; "))
    if not literal or FILE_VALUE.search(literal):
        return None
    if len(links) == 1:
        link = links[0]
        label = tidy(text[link.start:link.end])
        remainder = tidy(_PARENTHETICAL.sub("", literal.replace(label, "", 1)).strip('"\'“”'))
        if not remainder:
            return InfoboxFact(predicate, key, link.target, literal[:MAX_LITERAL_CHARS])
    return InfoboxFact(predicate, key, None, literal[:MAX_LITERAL_CHARS])


def infobox_facts(infobox: Template) -> list[InfoboxFact]:
    """Every non-empty named parameter of one infobox, split into items."""
    facts: list[InfoboxFact] = []
    for param in infobox.params:
        if not param.showkey:
            continue
        key = str(param.name).strip()
        predicate = normalize_key(key)
        if not predicate or SKIPPED_KEYS.match(predicate):
            continue
        renderer = Renderer()
        renderer.render(param.value)
        text = renderer.text()
        start = 0
        for line in text.split("\n") + [""]:
            end = start + len(line)
            if line.strip():
                links = [link for link in renderer.links if start <= link.start < end]
                shifted = [type(link)(link.target, link.start - start, link.end - start) for link in links]
                fact = _item_fact(predicate, key, line, shifted)
                if fact:
                    facts.append(fact)
            start = end + 1
    return facts
