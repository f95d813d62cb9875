"""One raw dump page to everything the store needs; runs in worker processes, so inputs and outputs are plain data."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from kg.dump_reader import RawPage
from kg.infobox import InfoboxFact, infobox_facts
from kg.passages import PassageDraft, section_passages
from kg.wikitext import normalize_title, parse_article

# What makes a page a person's, by what the page itself says: an infobox date of birth or death,
# or a category of the people born or dead in a year ("1788 births", "322 BC deaths").
LIFE_DATE_KEYS = frozenset({"birth_date", "death_date"})
_LIFE_CATEGORY = re.compile(r"^\d{1,4}(?: BC| BCE)? (?:births|deaths)$")
# Words that end a name without being its surname ("Martin Luther King Jr." is King).
GENERATIONAL_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv", "v", "vi"})
# A name with one of these words, or starting with one of these titles, is a ruler's or a saint's, and its
# last word no surname: "Henry VIII of England", "Alexander the Great", "Pope John Paul II".
_EPITHET_WORDS = frozenset({"of", "the"})
_RULER_TITLES = frozenset({"pope", "saint", "st.", "king", "queen", "emperor", "empress"})
_SURNAME = re.compile(r"^[^\W\d_]+(?:[-'’][^\W\d_]+)*$")
_ROMAN_NUMERAL = re.compile(r"^[IVXLCDM]+$")  # a regnal number: "Louis XIV"


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


def is_person(infobox_keys: Iterable[str], categories: Iterable[str]) -> bool:
    """Whether a page is about a person: its infobox (normalised keys) gives a date of birth or death, or it is
    in a "NNNN births" or "NNNN deaths" category."""
    return (not LIFE_DATE_KEYS.isdisjoint(infobox_keys)
            or any(_LIFE_CATEGORY.match(category) for category in categories))


def surname(title: str) -> str | None:
    """A person's surname by their title: its last word without disambiguator or generational suffix.

    ``Arthur Schopenhauer`` -> ``Schopenhauer``, ``Albert Sidney Johnston`` -> ``Johnston``,
    ``Martin Luther King Jr.`` -> ``King``; ``None`` for one word (``Aristotle``, ``Louis XIV``), a ruler's
    or saint's name (``Henry VIII of England``, ``Pope Pius XII``) or a last word that is no name.
    """
    words = title_without_disambiguator(title).replace(",", " ").split()
    while len(words) > 1 and words[-1].rstrip(".").casefold() in GENERATIONAL_SUFFIXES:
        words.pop()
    if (len(words) < 2 or words[0].casefold() in _RULER_TITLES
            or any(word.casefold() in _EPITHET_WORDS for word in words)):
        return None
    last = words[-1]
    is_name = len(last) >= 2 and last[0].isupper() and _SURNAME.match(last) and not _ROMAN_NUMERAL.match(last)
    return last if is_name else None


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
    if is_person((fact.predicate for fact in page.facts), article.categories) and (last := surname(raw.title)):
        page.aliases.append((last, "surname"))  # the weakest alias: retrieval.linking links it only when unshared
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
