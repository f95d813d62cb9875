"""Wikitext to clean, section-aware text with its links, categories and lead names (mwparserfromhell).

One parse per article. A small renderer walks the node tree: it keeps prose and
link labels, renders value templates through ``kg.templates``, and drops refs,
tables, files, comments and every other template. It records where each link
label sits in the rendered text so passages can cite the links they contain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import mwparserfromhell
from mwparserfromhell.nodes import (Argument, Comment, ExternalLink, Heading, HTMLEntity, Tag,
                                    Template, Text, Wikilink)
from mwparserfromhell.wikicode import Wikicode

from kg.templates import template_name, template_pieces

SKIP_TAGS = {"ref", "references", "table", "gallery", "math", "timeline", "imagemap", "score",
             "syntaxhighlight", "source", "pre", "graph", "templatedata", "inputbox", "chem", "ce",
             "hiero", "categorytree", "mapframe", "maplink", "noinclude", "section"}
FILE_NAMESPACES = {"file", "image", "media"}
OTHER_NAMESPACES = {"wikipedia", "wp", "wikt", "wiktionary", "help", "template", "user", "portal",
                    "talk", "special", "s", "q", "commons", "meta", "wikisource", "wikiquote",
                    "wikibooks", "b", "n", "v", "voy", "species", "d", "mw", "draft", "module",
                    "category talk", "user talk", "template talk", "wikipedia talk", "book", "doi"}
DISAMBIGUATION_TEMPLATES = {"disambiguation", "disambig", "dab", "disamb", "hndis", "geodis",
                            "numberdis", "letter disambiguation", "letter-number combination disambiguation",
                            "mil-unit-dis", "hospitaldis", "schooldis", "shipindex", "set index article",
                            "surname", "given name", "disambiguation cleanup", "place name disambiguation"}
SKIPPED_SECTIONS = {"references", "external links", "see also", "further reading", "notes",
                    "bibliography", "sources", "citations", "footnotes", "notes and references",
                    "works cited", "gallery", "references and notes", "cited sources", "explanatory notes"}
_INTERWIKI = re.compile(r"^[a-z]{2,3}(-[a-z]+)*$")
# Where a list item (``*``, ``#``, ``;``, ``:`` at the start of a line, or ``<li>``) or the line
# after a list begins in rendered section text. MediaWiki shows each as a block of its own; a
# single newline elsewhere is only a soft wrap, so the mark is what tells an item's end from a
# wrapped line. Passages turn it into a line break (kg.passages); it is a private-use
# character, so no article text contains it.
LINE_MARK = "\ue000"
_LIST_TAGS = {"li", "dt", "dd"}


def normalize_title(raw: str) -> str:
    """A link target as a page title: no anchor, spaces not underscores, first letter upper-cased."""
    title = " ".join(raw.replace("_", " ").split("#", 1)[0].split()).lstrip(":").strip()
    return title[:1].upper() + title[1:]


@dataclass
class LinkMention:
    target: str
    start: int
    end: int


@dataclass
class Section:
    """A section's rendered (untidied) text; ``path`` is " > "-joined headings, "" for the lead."""

    ordinal: int
    path: str
    text: str
    links: list[LinkMention]


@dataclass
class Article:
    sections: list[Section]
    categories: list[str]
    bold_names: list[str]
    infoboxes: list[Template]
    is_disambiguation: bool


class Renderer:
    """Renders wikicode into plain text, noting link positions and categories."""

    def __init__(self, categories: list[str] | None = None, *, mark_lines: bool = False) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.links: list[LinkMention] = []
        self.categories = categories if categories is not None else []
        self.mark_lines = mark_lines  # emit LINE_MARK where a list item, or the block after a list, starts
        self._in_list = False  # the current line is a list item: its line break ends the list's block

    def text(self) -> str:
        return "".join(self.parts)

    def emit(self, piece: str) -> None:
        self.parts.append(piece)
        self.length += len(piece)

    def render(self, code: Wikicode | None) -> None:
        if code is None:
            return
        for node in code.nodes:
            self.node(node)

    def node(self, node) -> None:
        if isinstance(node, Text):
            value = node.value
            if self._in_list and "\n" in value:  # a line after a list item is a block of its own
                head, _, tail = value.partition("\n")
                value = f"{head}\n{LINE_MARK}{tail}"
                self._in_list = False
            self.emit(value)
        elif isinstance(node, Wikilink):
            self.wikilink(node)
        elif isinstance(node, Template):
            for piece in template_pieces(node):
                self.emit(piece) if isinstance(piece, str) else self.render(piece)
        elif isinstance(node, Tag):
            tag = str(node.tag).strip().lower()
            if tag in SKIP_TAGS:
                return
            if tag == "br":
                self.emit("\n")
                return
            # an item is a block; a definition after its term on the same line (";term : def") is not
            if self.mark_lines and (tag == "li" or (tag in _LIST_TAGS and self._at_line_start())):
                self.emit(LINE_MARK)
                self._in_list = True
            if node.contents is not None:
                self.render(node.contents)
        elif isinstance(node, HTMLEntity):
            self.emit(node.normalize())
        elif isinstance(node, ExternalLink):
            self.render(node.title)
        elif isinstance(node, Heading):
            self.emit("\n")
        elif isinstance(node, (Comment, Argument)):
            return

    def _at_line_start(self) -> bool:
        last = next((part for part in reversed(self.parts) if part), "")
        return not last or last.endswith(("\n", LINE_MARK))

    def wikilink(self, node: Wikilink) -> None:
        raw = str(node.title).strip()
        prefix, colon, rest = raw.lstrip(":").partition(":")
        namespace = prefix.strip().lower() if colon else ""
        if namespace == "category":
            if not raw.startswith(":"):
                self.categories.append(normalize_title(rest))
            return
        if namespace in FILE_NAMESPACES or (namespace and _INTERWIKI.match(prefix.strip()) and not raw.startswith(":")):
            return
        start = self.length
        if node.text is not None:
            self.render(node.text)
        else:
            self.emit(raw.lstrip(":").split("#", 1)[0] or raw.split("#", 1)[-1])
        target = normalize_title(raw)
        if target and namespace not in OTHER_NAMESPACES:
            self.links.append(LinkMention(target, start, self.length))


def _heading_title(heading: Heading) -> str:
    return " ".join(heading.title.strip_code().split())


def _is_disambiguation_template(name: str) -> bool:
    return name in DISAMBIGUATION_TEMPLATES or name.startswith("disambig") or name.endswith(" disambiguation")


def parse_article(title: str, text: str) -> Article:
    """Sections with their text and links, plus categories, bold lead names and infobox templates."""
    code = mwparserfromhell.parse(text)
    categories: list[str] = []
    infoboxes: list[Template] = []
    bold: list[str] = []
    disambiguation = title.endswith("(disambiguation)")
    sections: list[Section] = []
    path: list[tuple[int, str]] = []  # (level, heading) stack
    renderer = Renderer(categories, mark_lines=True)
    skipping = False

    def flush() -> None:
        if not skipping:
            sections.append(Section(len(sections), " > ".join(h for _, h in path), renderer.text(), renderer.links))

    for node in code.nodes:
        if isinstance(node, Heading):
            flush()
            while path and path[-1][0] >= node.level:
                path.pop()
            path.append((node.level, _heading_title(node)))
            skipping = any(h.lower() in SKIPPED_SECTIONS for _, h in path)
            renderer = Renderer(categories, mark_lines=True)
            continue
        if isinstance(node, Template):
            name = template_name(node)
            if name.startswith("infobox"):
                infoboxes.append(node)
                continue
            if _is_disambiguation_template(name):
                disambiguation = True
        if not path and isinstance(node, Tag) and node.wiki_markup in ("'''", "'''''") and len(bold) < 4:
            name = " ".join(node.contents.strip_code().split()) if node.contents else ""
            if 0 < len(name) <= 80:
                bold.append(name)
        renderer.node(node)
    flush()
    return Article(sections, list(dict.fromkeys(categories)), list(dict.fromkeys(bold)), infoboxes, disambiguation)
