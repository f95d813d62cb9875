"""Entity linking: find the question's mentions of knowledge-graph entities by title or alias.

Spans of the question are folded with the same ``normalize_alias`` that
ingestion used for the ``aliases`` table, looked up (all spans of a question in
one query: the table is indexed by the folded name, and is never held in memory),
and chosen longest first without overlaps, so "Animal Farm" wins over "Animal" and "Farm".

A person's surname is an alias too (source ``surname``, "Schopenhauer" for Arthur Schopenhauer), the
weakest: it links only where no other alias has the name, where exactly one entity has it as a
surname (a surname two people share links neither), and where the question's word stands alone,
not within a longer name ("Andrew Johnston" is not Albert Sidney Johnston).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

from kgqa.records import LinkedEntity
from kgqa.text import STOPWORDS

_TOKEN = re.compile(r"[^\W_]+(?:[-'’.&/][^\W_]+)*\.?", re.UNICODE)
# Which kind of alias wins when one name points at several entities.
_SOURCE_RANK = {"title": 0, "redirect": 1, "bold": 2, "disambiguator": 3, "surname": 4}
SURNAME = "surname"  # the alias source of a person's surname (kg.page_parser.surname)
MAX_SPAN_TOKENS = 10  # longer spans are not looked up
LOOKUP_NAMES = 5000  # names per query: far below SQLite's 32766 bound parameters


@dataclass(frozen=True)
class AliasEntry:
    """One row of the alias table, denormalised with the entity it names."""

    norm: str
    alias: str
    entity_id: int
    title: str
    source: str
    is_disambiguation: bool = False


AliasLookup = Callable[[Collection[str]], Iterable[AliasEntry]]  # folded names -> the alias rows with those names


def sql_alias_lookup(sessions) -> AliasLookup:
    """Alias rows from the SQL store, by folded name, in one ``IN`` query (``sessions`` opens a session).

    Only a question of thousands of words takes more than one query (``LOOKUP_NAMES`` names each).
    """

    def lookup(norms: Collection[str]) -> list[AliasEntry]:
        from sqlalchemy import select

        from kg.store import Alias, Entity

        names = sorted(norms)
        entries: list[AliasEntry] = []
        with sessions() as session:
            for at in range(0, len(names), LOOKUP_NAMES):
                rows = session.execute(
                    select(Alias.norm, Alias.alias, Alias.entity_id, Entity.title, Alias.source,
                           Entity.is_disambiguation)
                    .join(Entity, Entity.entity_id == Alias.entity_id)
                    .where(Alias.norm.in_(names[at : at + LOOKUP_NAMES]))
                )
                entries += [AliasEntry(*row) for row in rows]
        return entries

    return lookup


class EntityLinker:
    """Longest-match-first linker; the question's spans are looked up with ``lookup``.

    ``popularity`` scores an entity (by its alias row): among the rows of one name, the
    most popular entity wins after disambiguation pages and the alias source.
    """

    def __init__(
        self,
        lookup: AliasLookup,
        normalize: Callable[[str], str],
        url_for: Callable[[str], str],
        *,
        popularity: Callable[[AliasEntry], float] | None = None,
        max_span_tokens: int = MAX_SPAN_TOKENS,
    ):
        self._lookup = lookup
        self._normalize = normalize
        self._url_for = url_for
        self._popularity = popularity or (lambda entry: 0.0)
        self._max_span = max_span_tokens

    def _preference(self, entry: AliasEntry) -> tuple:
        return (
            entry.is_disambiguation,
            _SOURCE_RANK.get(entry.source, 9),
            -self._popularity(entry),
            entry.entity_id,
        )

    def _best_by_norm(self, norms: Collection[str]) -> dict[str, AliasEntry]:
        """The preferred alias row of each folded name that the alias table holds.

        A surname counts only where the name is no other kind of alias, and only where it is one
        entity's: a surname several people share names none of them.
        """
        wanted = [norm for norm in norms if norm]
        found: dict[str, list[AliasEntry]] = {}
        for entry in self._lookup(wanted) if wanted else ():
            found.setdefault(entry.norm, []).append(entry)
        best = {}
        for norm, entries in found.items():
            named = [entry for entry in entries if entry.source != SURNAME]
            if named or len({entry.entity_id for entry in entries}) == 1:
                best[norm] = min(named or entries, key=self._preference)
        return best

    def link(self, question: str) -> list[LinkedEntity]:
        """Entities mentioned in ``question``, in order of appearance, one per entity.

        A lone lower-case word links only where nothing capitalised does: in "Which city is
        the capital of Alabama?" the subject is Alabama, not the articles "City" and "Capital";
        in "What is anthropology?" the lower-case word is the only subject there is.
        """
        tokens = [(m.start(), m.end(), m.group().rstrip(".") or m.group()) for m in _TOKEN.finditer(question)]
        spans = {}  # (start token, length) -> (mention, folded)
        possessive = {}  # the same spans without a possessive's "'s" ("Albania's capital" names Albania)
        for start in range(len(tokens)):
            for length in range(min(self._max_span, len(tokens) - start), 0, -1):
                mention = question[tokens[start][0] : tokens[start + length - 1][1]].rstrip(".")
                spans[start, length] = (mention, self._normalize(mention))
                bare = _POSSESSIVE.sub("", mention)
                if bare != mention and bare:
                    possessive[start, length] = (bare, self._normalize(bare))
        best = self._best_by_norm({norm for _mention, norm in [*spans.values(), *possessive.values()]})
        for key, (bare, norm) in possessive.items():
            if spans[key][1] not in best and norm in best:
                spans[key] = (bare, norm)
        alone = {match.start() for match in _words_alone(question)}
        all_lower = question == question.lower()
        chosen = self._choose(tokens, spans, best, all_lower, alone)
        if not chosen and not all_lower:
            chosen = self._choose(tokens, spans, best, True, alone)
        linked: list[LinkedEntity] = []
        seen: set[int] = set()
        for _start, entry, mention in chosen:
            if entry.entity_id in seen:
                continue
            seen.add(entry.entity_id)
            linked.append(
                LinkedEntity(
                    entity_id=entry.entity_id,
                    title=entry.title,
                    mention=mention,
                    alias=entry.alias,
                    url=self._url_for(entry.title),
                )
            )
        return linked

    def _choose(self, tokens, spans, best, all_lower: bool, alone: Collection[int]) -> list[tuple[int, AliasEntry, str]]:
        """The mentions kept, longest first without overlaps, in order of appearance: (start token, entry, mention).

        A surname is kept only as one capitalised word standing alone (its offset in ``alone``).
        """
        candidates: list[tuple[int, int, AliasEntry, str]] = []  # (start token, length, entry, mention)
        for (start, length), (mention, norm) in spans.items():  # longest first from each start
            if candidates and candidates[-1][0] == start:
                continue  # the longest match starting here is enough
            entry = best.get(norm)
            if entry is not None and entry.source == SURNAME and (length > 1 or tokens[start][0] not in alone):
                continue
            if entry is not None and self._plausible(tokens[start : start + length], all_lower):
                candidates.append((start, length, entry, mention))
        candidates.sort(key=lambda c: (-c[1], c[0]))
        taken: set[int] = set()
        chosen: list[tuple[int, AliasEntry, str]] = []
        for start, length, entry, mention in candidates:
            positions = set(range(start, start + length))
            if positions & taken:
                continue
            taken |= positions
            chosen.append((start, entry, mention))
        return sorted(chosen, key=lambda c: c[0])

    @staticmethod
    def _plausible(span: list[tuple[int, int, str]], all_lower: bool) -> bool:
        """Reject mentions made only of stopwords, and lone lower-case common words unless ``all_lower``."""
        words = [text for _s, _e, text in span]
        content = [w for w in words if w.lower() not in STOPWORDS]
        if not content:
            return False
        if all_lower or len(content) >= 2:
            return True
        return any(w[0].isupper() or any(ch.isdigit() for ch in w) for w in content)


_POSSESSIVE = re.compile(r"(?<=\w)['’]s?$")
_CAPITALISED = re.compile(r"(?<![\w'’])([A-Z][^\W\d_]+(?:-[A-Z][^\W\d_]+)*)(?:['’]s?)?(?![\w'’])")
_DISAMBIGUATOR = re.compile(r"\s+\([^)]*\)$")


def surname_words(question: str, linked: Iterable[str]) -> list[str]:
    """The capitalised words of ``question`` (a possessive's "'s" left off) that no linked mention covers,
    that are no stopword and that stand alone, not next to another capitalised word ("Civil War") unless
    possessive ("Schopenhauer's The World as Will"): the words ``by_surname`` may read as surnames."""
    covered = {word for mention in linked for word in mention.casefold().split()}
    found = [match.group(1) for match in _words_alone(question) if match.group(1).casefold() not in covered]
    return list(dict.fromkeys(found))


def _words_alone(question: str) -> Iterator[re.Match]:
    """The matches of capitalised words of ``question`` that are no stopword and stand alone (group 1: the
    word without a possessive's "'s"), in order."""
    matches = list(_CAPITALISED.finditer(question))
    for at, match in enumerate(matches):
        word = match.group(1)
        if word.casefold() in STOPWORDS:
            continue
        neighbours = [other for other in matches[max(at - 1, 0) : at + 2]
                      if other is not match and _adjacent(question, match, other)]
        possessive = match.group(0) != word
        if possessive or all(other.group(1).casefold() in STOPWORDS for other in neighbours):
            yield match  # a word within a longer name ("the Civil War") is no surname alone


def _adjacent(text: str, one: re.Match, other: re.Match) -> bool:
    """Whether only white space separates two matches of ``text``."""
    left, right = sorted((one, other), key=lambda match: match.start())
    return text[left.end():right.start()].strip() == ""


def by_surname(question: str, linked: Iterable[str], titles: Iterable[str]) -> list[tuple[str, str]]:
    """(mention, title) for each of ``surname_words`` that ends exactly one of ``titles`` of two or more
    capitalised words: "Schopenhauer" for Arthur Schopenhauer.

    The alias table links a surname only where it is one person's in the whole knowledge base ("Lincoln"
    is a city, a car, several people on a full dump); among ``titles``, the articles retrieval already
    ranks for the question, one ending with the word is the one the question means. A possessive ("Schopenhauer's")
    counts as the word; a word ending two or more titles names nothing.
    """
    ends: dict[str, set[str]] = {}
    for title in titles:
        words = _DISAMBIGUATOR.sub("", title).split()
        if len(words) >= 2 and all(word[:1].isupper() for word in words):  # a name, not "An American in Paris"
            ends.setdefault(words[-1].casefold(), set()).add(title)
    found: list[tuple[str, str]] = []
    for word in surname_words(question, linked):
        owners = ends.get(word.casefold(), set())
        if len(owners) == 1 and (title := next(iter(owners))) not in (t for _, t in found):
            found.append((word, title))
    return found
