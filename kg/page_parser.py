"""One raw dump page to everything the store needs; runs in worker processes, so inputs and outputs are plain data."""

from __future__ import annotations

from dataclasses import dataclass, field

from kg.dump_reader import RawPage
from kg.infobox import InfoboxFact, infobox_facts
from kg.passages import PassageDraft, section_passages
from kg.wikitext import normalize_title, parse_article


@dataclass
class ParsedPage:
    """An article ready to write: passages, aliases, infobox facts, links (with the passage they sit in), categories."""

    page_id: int
    title: str
    rev_id: int
    timestamp: str
    is_disambiguation: bool
    passages: list[PassageDraft] = field(default_factory=list)
    aliases: list[tuple[str, str]] = field(default_factory=list)  # (alias, source)
    facts: list[InfoboxFact] = field(default_factory=list)
    links: dict[str, int] = field(default_factory=dict)  # target title -> passage ordinal of first mention
    categories: list[str] = field(default_factory=list)


def title_without_disambiguator(title: str) -> str:
    """``Animalia (book)`` -> ``Animalia``; other titles unchanged."""
    if title.endswith(")") and " (" in title:
        return title[: title.rindex(" (")].strip()
    return title


def parse_page(raw: RawPage) -> ParsedPage:
    """Parse one main-namespace, non-redirect article."""
    article = parse_article(raw.title, raw.text)
    page = ParsedPage(raw.page_id, raw.title, raw.rev_id, raw.timestamp, article.is_disambiguation)
    for section in article.sections:
        page.passages.extend(section_passages(section, len(page.passages)))
    aliases = [(raw.title, "title")]
    bare = title_without_disambiguator(raw.title)
    if bare != raw.title:
        aliases.append((bare, "disambiguator"))
    aliases.extend((name, "bold") for name in article.bold_names)
    page.aliases = aliases
    for infobox in article.infoboxes:
        page.facts.extend(infobox_facts(infobox))
    for draft in page.passages:
        for target in draft.links:
            page.links.setdefault(target, draft.ordinal)
    for section in article.sections:  # links whose label did not survive into a passage
        for link in section.links:
            page.links.setdefault(link.target, -1)
    page.links.pop(raw.title, None)
    page.categories = article.categories
    return page


def is_list_page(title: str) -> bool:
    return title.startswith(("List of ", "Lists of "))


def redirect_target(raw: RawPage) -> str:
    return normalize_title(raw.redirect or "")
