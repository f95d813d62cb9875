"""Comparison questions: two things the question names, one value of each from the knowledge graph, compared in code.

"Who was born first, Albert Einstein or Aldous Huxley?" needs two articles and an
ordering no evidence sentence states. The knowledge graph holds each side's value as
an infobox fact (``birth_date`` 1879-03-14, 1894-07-26), so kgqa reads both, compares
them itself and knows which thing the question's comparative picks. Then:

- a drafted sentence that names the things compared is a comparison claim: it stands
  when the thing it puts first is the one the values pick (a comparative of the other
  direction, "Huxley was born later than Einstein", turns it round) and every year or
  number it states is one of the two values; it is cited to both facts, so a user can
  follow both hops;
- where no drafted sentence stands, the comparison itself is the answer, cited to both facts.

A question is read as a comparison when it names two linked entities joined by "or" and
holds one comparative of a known direction; as a choice when it holds none ("Where is
Portuguese the official language, Angola or Andorra?"); as a difference when it asks how
many years or months lie between two linked things' dates ("How many years after Albert
Einstein was Alain Connes born?"). A coincidence ("… still alive when …"), a life's length
or anything else is left to the single-hop checks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kgqa.records import FactHit, LinkedEntity
from kgqa.text import content_words, fold, words
from qa.budget import fact_line
from qa.claims import ClaimVerifier, QuestionFrame, Reading, Verdict
from qa.tuning import COMPARED_RELATION_MATCH, NUMBER_WINDOW, RELATION_MATCH

# The direction a comparative asks for: the earlier or later date, the larger or smaller number.
EARLIER = frozenset({"first", "earlier", "earliest", "before", "older", "oldest", "sooner"})
LATER = frozenset({"later", "latest", "last", "after", "younger", "youngest"})
MORE = frozenset({"more", "most", "larger", "largest", "bigger", "biggest", "longer", "longest", "higher",
                  "highest", "taller", "tallest", "greater", "greatest"})
LESS = frozenset({"fewer", "fewest", "less", "least", "smaller", "smallest", "shorter", "shortest", "lower",
                  "lowest"})
DIRECTIONS = {"earlier": EARLIER, "later": LATER, "more": MORE, "less": LESS}
OPPOSITE = {"earlier": "later", "later": "earlier", "more": "less", "less": "more"}
# What a comparative measures when the question names no relation: an age is the date of birth ("Who is
# older" asks for the earlier birth date), a size the area, a number of people the population.
MEASURES = (
    (frozenset({"older", "oldest", "younger", "youngest"}), "born birth"),
    (frozenset({"larger", "largest", "bigger", "biggest", "smaller", "smallest"}), "area"),
    (frozenset({"people", "populous", "populated", "inhabitant", "inhabitants", "resident", "residents"}), "population"),
)
# "How many years after X was Y born?": the time between two dates.
_DIFFERENCE = re.compile(r"^\s*how\s+many\s+(years|months)\b", re.IGNORECASE)
DIFFERENCE_CUES = frozenset({"after", "before", "between", "apart", "passed", "later", "earlier"})
# Words that make a question more than one comparison of two values.
NOT_PLAIN = frozenset({"how", "when", "still", "same", "both", "between", "difference", "lived", "live", "age"})
# Between two things compared: "or", and at most a few lower-case words ("or the present Republic of …").
_JOINED = re.compile(r"^(?:'s|’s)?\s*,?\s+or\s+(?:[a-z]+\s+){0,3}$")
_ISO_DATE = re.compile(r"^\s*(-?\d{1,4})-(\d{1,2})-(\d{1,2})")
_YEAR = re.compile(r"(?<![\d,.])(\d{3,4})(?![\d]|[,.]\d)(\s*(?:BC|BCE)\b)?")
_MONTHS = {m: i for i, m in enumerate(("january", "february", "march", "april", "may", "june", "july", "august",
                                       "september", "october", "november", "december"), start=1)}
_DAY_MONTH = re.compile(r"\b(\d{1,2})\s+([A-Z][a-z]+)\s+(\d{3,4})\b")
_MONTH_DAY = re.compile(r"\b([A-Z][a-z]+)\s+(\d{1,2}),?\s+(\d{3,4})\b")
_NUMBER = re.compile(r"(?<![\w.,])\d[\d,]*(?:\.\d+)?")  # not the 2 of "km2"
# Where a sentence comparing two things turns from one to the other.
_CLAUSE = re.compile(r",\s*(?:while|whereas|but|against|compared|and)\b|;|\bthan\b|\bwhile\b|\bwhereas\b")
_SCALE = {"thousand": 1e3, "million": 1e6, "billion": 1e9}


@dataclass(frozen=True)
class ComparisonQuestion:
    """The two things a comparison question names, in its order, and the direction it asks for."""

    options: tuple[LinkedEntity, LinkedEntity]
    direction: str  # earlier | later | more | less | difference; "" for a choice, which the single-hop checks read
    relation_hint: str  # words the relation is matched with: the question's, plus what a comparative measures
    side_hints: tuple[str, str] = ("", "")  # a side's own relation words, where the question gives one ("X's death")
    unit: str = ""  # a difference's unit: years | months

    @property
    def is_choice(self) -> bool:
        return not self.direction

    @property
    def kind(self) -> str:
        return "date" if self.direction in ("earlier", "later", "difference") else "number"


@dataclass(frozen=True)
class ComparedValue:
    """One side of a comparison: the thing, the fact that gives its value, and the value."""

    option: LinkedEntity
    fact: FactHit
    value: tuple  # comparable: (year, month, day) for a date, (number,) for a number


@dataclass(frozen=True)
class Comparison:
    """Both sides read from the knowledge graph, and the one the question's direction picks."""

    question: ComparisonQuestion
    sides: tuple[ComparedValue, ComparedValue]

    @property
    def winner(self) -> ComparedValue | None:
        """The side the direction picks (for a difference, the later); None when the values are equal."""
        first, second = self.sides
        if first.value == second.value:
            return None
        picks_larger = self.question.direction in ("later", "more", "difference")
        return first if (first.value > second.value) == picks_larger else second

    @property
    def loser(self) -> ComparedValue:
        return self.sides[1] if self.winner is self.sides[0] else self.sides[0]

    def differences(self) -> set[int]:
        """How far apart the two dates are in the question's unit: by the calendar ("1947 is 68 years after
        1879") and in whole units elapsed (one less where the later date's day of the year comes earlier)."""
        (y1, m1, d1), (y2, m2, d2) = sorted(side.value for side in self.sides)
        if self.question.unit == "months":
            calendar = (y2 - y1) * 12 + (m2 - m1)
            return {calendar, calendar - 1} if d2 and d1 and d2 < d1 else {calendar}
        calendar = y2 - y1
        return {calendar, calendar - 1} if m1 and m2 and (m2, d2) < (m1, d1) else {calendar}


def read_comparison(question: str, entities: Sequence[LinkedEntity]) -> ComparisonQuestion | None:
    """The comparison ``question`` asks: two linked things joined by "or" and one direction (none: a choice),
    or how many years or months lie between two linked things; None for any other question."""
    placed = []
    for entity in entities:
        at = question.find(entity.mention)
        if at >= 0 and all(entity.title != e.title for _, e in placed):
            placed.append((at, entity))
    placed.sort(key=lambda pair: pair[0])
    pair = None
    for (at_a, a), (at_b, b) in zip(placed, placed[1:]):
        if _JOINED.match(question[at_a + len(a.mention):at_b]):
            pair = (a, b)
            break
    if difference := _DIFFERENCE.match(question):
        return _read_difference(question, placed, difference.group(1).lower())
    if pair is None:
        return None
    rest = question
    for entity in pair:
        rest = rest.replace(entity.mention, " ")
    said = set(words(rest))
    if said & NOT_PLAIN:
        return None
    directions = {name for name, cue in DIRECTIONS.items() if said & cue}
    if len(directions) > 1:
        return None
    if not directions:  # a choice: "Where is Portuguese the official language, Angola or Andorra?"
        return ComparisonQuestion(pair, "", " ".join(content_words(rest)))
    hint = " ".join([*content_words(rest), *(measure for cue, measure in MEASURES if said & cue)])
    return ComparisonQuestion(pair, directions.pop(), hint)


def _read_difference(question: str, placed: list[tuple[int, LinkedEntity]], unit: str) -> ComparisonQuestion | None:
    """ "How many years after Albert Einstein was Alain Connes born?": the first two linked things, each with the
    relation words that follow it ("Abraham Lincoln's death", "Ayn Rand born")."""
    if len(placed) < 2 or not set(words(question)) & DIFFERENCE_CUES:
        return None
    (at_a, a), (at_b, b) = placed[:2]
    skip = DIFFERENCE_CUES | {unit, "many", "much"}

    def relation(text: str) -> str:
        return " ".join(w for w in content_words(text) if w not in skip)

    hints = (relation(question[at_a + len(a.mention):at_b]), relation(question[at_b + len(b.mention):]))
    rest = question.replace(a.mention, " ").replace(b.mention, " ")
    return ComparisonQuestion((a, b), "difference", relation(rest), hints, unit)


def date_value(text: str) -> tuple[int, int, int] | None:
    """A date as (year, month, day), month and day 0 where unknown: "1788-02-22", "17 August 1945", "384 BC"."""
    if match := _ISO_DATE.match(text):
        return int(match.group(1)), int(match.group(2)), int(match.group(3))
    if match := _DAY_MONTH.search(text):
        if (month := _MONTHS.get(match.group(2).lower())) is not None:
            return int(match.group(3)), month, int(match.group(1))
    if match := _MONTH_DAY.search(text):
        if (month := _MONTHS.get(match.group(1).lower())) is not None:
            return int(match.group(3)), month, int(match.group(2))
    if match := _YEAR.search(text):
        year = int(match.group(1))
        return (-year if match.group(2) else year), 0, 0
    return None


def number_value(text: str) -> float | None:
    """The first number of ``text`` ("1,246,700", "467.63", "3.2 million"), scaled by a following word; None for
    a rank ("59th")."""
    match = _NUMBER.search(text)
    if match is None or re.match(r"(?:st|nd|rd|th)\b", text[match.end():]):
        return None
    value = float(match.group().replace(",", ""))
    following = text[match.end():].split()
    return value * _SCALE.get(following[0].strip(".,;:)").lower(), 1.0) if following else value


def value_of(text: str, kind: str) -> tuple | None:
    if kind == "date":
        return date_value(text)
    number = number_value(text)
    return None if number is None else (number,)


def compare(asked: ComparisonQuestion, facts: Sequence[FactHit],
            relation_match: Callable[[str, str], float]) -> Comparison | None:
    """Both sides' values from ``facts``: for each thing compared, its fact whose relation the question asks
    for most (``relation_match(question words, predicate)``) among those holding a value of the kind
    compared; None unless both sides have one matching at least ``COMPARED_RELATION_MATCH``.
    The same relation is preferred on both sides (two birth dates, not a birth and a death). A relation
    the subject lists several times, or a share ("49%"), gives no value to compare.
    """
    candidates = []
    for option, side_hint in zip(asked.options, asked.side_hints):
        found = []
        own = [f for f in facts if f.subject == option.title]
        repeated = {f.predicate for f in own if sum(g.predicate == f.predicate for g in own) > 1}
        for fact in own:
            # one value per side: a relation listed several times ("ethnic groups") or a share is no measure
            if fact.object_is_entity or fact.predicate in repeated or "%" in fact.object:
                continue
            value = value_of(fact.object, asked.kind)
            match = relation_match(side_hint or asked.relation_hint, fact.predicate)
            if value is not None and match >= COMPARED_RELATION_MATCH:
                found.append((match, fact, value))
        if not found:
            return None
        candidates.append(sorted(found, key=lambda m: (-m[0], m[1].triple_id)))
    shared = {f.predicate for _, f, _ in candidates[0]} & {f.predicate for _, f, _ in candidates[1]}
    sides = []
    for option, found in zip(asked.options, candidates):
        same = [m for m in found if m[1].predicate in shared]
        _, fact, value = (same or found)[0]
        sides.append(ComparedValue(option, fact, value))
    return Comparison(asked, (sides[0], sides[1]))


def _distinct_words(option: LinkedEntity, other: LinkedEntity) -> set[str]:
    """The folded words that name ``option`` and not ``other`` ("schopenhauer", not a shared "albert")."""
    own = set(content_words(option.title)) | set(content_words(option.mention))
    return own - set(content_words(other.title)) - set(content_words(other.mention))


def first_named(text: str, asked: ComparisonQuestion) -> LinkedEntity | None:
    """The thing compared that ``text`` names first; None when it names neither."""
    spans = _mentions(text, asked)
    return spans[0][1] if spans else None


def claimed_winner(text: str, asked: ComparisonQuestion) -> LinkedEntity | None:
    """The thing a sentence puts first, turned round when it says the opposite direction ("X was born later
    than Y" picks Y for "who was born first"); None when it names neither thing compared."""
    first = first_named(text, asked)
    if first is None or asked.is_choice:
        return first
    a, b = asked.options
    other = b if first is a else a
    said = {fold(w) for w in words(text)}
    own, opposite = DIRECTIONS[asked.direction], DIRECTIONS[OPPOSITE[asked.direction]]
    if said & opposite and not said & own:
        return other
    return first


def stated_values_hold(text: str, comparison: Comparison) -> bool:
    """Whether every year (for dates) or number (for numbers) the sentence states is one of the two values."""
    sides = comparison.sides
    if comparison.question.kind == "date":
        years = {abs(side.value[0]) for side in sides}
        return all(int(year) in years for year, _ in _YEAR.findall(text))
    stated = [(at, value) for at, value in values_in(text, "number") if not _is_year(text, at)]
    return all(any(same_value(value, side.value, "number") for side in sides) for _, value in stated)


def _is_year(text: str, at: int) -> bool:
    """Whether the number at ``at`` is a year ("at the 2010 Census"), which dates a measure rather than being one."""
    match = re.match(r"\d{4}(?!\d|[,.]\d)", text[at:])
    return bool(match) and 1000 <= int(match.group()) <= 2100


def describe(comparison: Comparison) -> str:
    """The comparison as a sentence, each value as the fact gives it."""
    winner, loser = comparison.winner, comparison.loser
    if comparison.question.direction == "difference":
        return (f"{winner.option.title}'s {winner.fact.predicate.replace('_', ' ')} ({winner.fact.object}) comes "
                f"{max(comparison.differences())} {comparison.question.unit} after {loser.option.title}'s "
                f"{loser.fact.predicate.replace('_', ' ')} ({loser.fact.object}).")
    relation = winner.fact.predicate.replace("_", " ")
    word = {"earlier": "earlier", "later": "later", "more": "larger", "less": "smaller"}[comparison.question.direction]
    return (f"{winner.option.title} has the {word} {relation}: {winner.fact.object}, "
            f"against {loser.fact.object} for {loser.option.title}.")


def values_in(text: str, kind: str) -> list[tuple[int, tuple]]:
    """Every value of ``kind`` written in ``text``, with its character offset: years for dates, numbers else."""
    if kind == "date":
        return [(m.start(), (-int(m.group(1)) if m.group(2) else int(m.group(1)),)) for m in _YEAR.finditer(text)]
    found = []
    for match in _NUMBER.finditer(text):
        value = number_value(text[match.start():])
        if value is not None:
            found.append((match.start(), (value,)))
    return found


def same_value(a: tuple, b: tuple, kind: str) -> bool:
    """Dates agree on the year; numbers within the rounding a sentence uses ("4.8 million" for 4,779,736)."""
    if kind == "date":
        return a[0] == b[0]
    return abs(a[0] - b[0]) <= 0.05 * max(abs(b[0]), 1.0)


def _mentions(text: str, asked: ComparisonQuestion) -> list[tuple[int, LinkedEntity]]:
    """Where ``text`` first names each thing compared, in order."""
    a, b = asked.options
    lowered = text.lower()
    spans = []
    for option, other in ((a, b), (b, a)):
        names = _distinct_words(option, other)
        at = min((m.start() for w in names for m in re.finditer(rf"\b{re.escape(w)}(?:'s|’s|s)?\b", lowered)),
                 default=None)
        if at is not None:
            spans.append((at, option))
    return sorted(spans, key=lambda pair: pair[0])


def claimed_values(text: str, asked: ComparisonQuestion) -> dict[str, tuple]:
    """Each option's value as the sentence states it.

    A clause that names one thing gives it its values ("Afghanistan has more people, about 32.5 million,
    against about 24.3 million in Angola"); in a clause that names both, each takes the first value
    after it is named and before the other is ("Schopenhauer (1788) was born before Lincoln (1809)").
    """
    found: dict[str, tuple] = {}
    at = 0
    for clause in _CLAUSE.split(text):
        offset = text.find(clause, at)
        at = offset + len(clause)
        spans = _mentions(clause, asked)
        stated = values_in(clause, asked.kind)
        for index, (start, option) in enumerate(spans):
            end = spans[index + 1][0] if index + 1 < len(spans) else len(clause)
            inside = [v for position, v in stated if (start if len(spans) > 1 else 0) <= position < end]
            if inside and option.title not in found:
                found[option.title] = inside[0]
    return found


def _fact_reading(fact: FactHit, readings: Sequence[Reading]) -> Reading | None:
    line = fact_line(fact)
    return next((r for r in readings if r.sentence.is_fact and r.sentence.text == line), None)


def _stating(option: LinkedEntity, value: tuple, asked: ComparisonQuestion, readings: Sequence[Reading],
             verifier: ClaimVerifier) -> Reading | None:
    """A sentence of ``option``'s own article that states ``value`` within ``NUMBER_WINDOW`` tokens of a word
    as close as ``COMPARED_RELATION_MATCH`` to one of the relation's words (the question's, not its
    comparative, and "born" for an age): "Angola's 24.3 million people", "Agassi (born April 29, 1970)"."""
    cues = set().union(*DIRECTIONS.values())
    relation = [w for w in dict.fromkeys(asked.relation_hint.split()) if w not in cues]
    found: list[tuple[float, int, Reading]] = []  # the closest statement of the value is cited
    for order, reading in enumerate(readings):
        if reading.sentence.title != option.title or reading.sentence.is_fact:
            continue
        tokens = reading.words
        candidates = [t for t in tokens if not t[0].isdigit() and t not in reading.title_words]
        near = []
        for word in relation:
            score, match = verifier.words.best_match(word, candidates)
            if match and score >= COMPARED_RELATION_MATCH:
                near.extend(i for i, t in enumerate(tokens) if t == match)
        for index, token in enumerate(tokens):
            if not token[:1].isdigit():
                continue
            following = tokens[index + 1] if index + 1 < len(tokens) else ""
            written = value_of(f"{token} {following}", asked.kind)
            if (written is not None and same_value(written, value, asked.kind)
                    and any(abs(index - position) <= NUMBER_WINDOW for position in near)):
                found.append((abs(written[0] - value[0]), order, reading))
    return min(found, key=lambda f: f[:2])[2] if found else None


def check_comparison(text: str, asked: ComparisonQuestion, comparison: Comparison | None,
                     readings: Sequence[Reading], verifier: ClaimVerifier) -> Verdict | None:
    """The verdict on a drafted sentence that names a thing compared; None when it names neither.

    With both values in the knowledge graph, the sentence stands when it picks the side they pick and
    states no other year or number. Else it must state both values, each found beside the asked
    relation in a sentence of that side's own article, and pick the side those values pick.
    """
    if asked.direction == "difference":
        return _check_difference(text, comparison, readings)
    claimed = claimed_winner(text, asked)
    if claimed is None:
        return None
    if comparison is not None:
        winner = comparison.winner
        if winner is None:
            return Verdict(False, "the two things compared have the same value")
        if not stated_values_hold(text, comparison):
            return Verdict(False, "the sentence states a value neither side's fact gives")
        if claimed.title != winner.option.title:
            return Verdict(False, f"the facts pick {winner.option.title}, the sentence {claimed.title}")
        first, second = _fact_reading(winner.fact, readings), _fact_reading(comparison.loser.fact, readings)
        if first is None or second is None:
            return Verdict(False, "a compared fact is not in the evidence")
        return Verdict(True, "", first.sentence, 1.0, {"comparison": "facts"}, also=(second.sentence,))
    values = claimed_values(text, asked)
    sources = {}
    for option in asked.options:
        if option.title not in values:
            return Verdict(False, f"the sentence states no value for {option.title}")
        reading = _stating(option, values[option.title], asked, readings, verifier)
        if reading is None:
            return Verdict(False, f"no sentence of {option.title} states the value the sentence gives it")
        sources[option.title] = reading
    a, b = asked.options
    if values[a.title] == values[b.title] or (asked.kind == "date" and values[a.title][0] == values[b.title][0]):
        return Verdict(False, "the two values the sentence states are equal")
    picks_larger = asked.direction in ("later", "more")
    winner = a if (values[a.title] > values[b.title]) == picks_larger else b
    if claimed.title != winner.title:
        return Verdict(False, f"the values stated pick {winner.title}, the sentence {claimed.title}")
    loser = b if winner is a else a
    return Verdict(True, "", sources[winner.title].sentence, 1.0, {"comparison": "passages"},
                   also=(sources[loser.title].sentence,))


def _check_difference(text: str, comparison: Comparison | None, readings: Sequence[Reading]) -> Verdict | None:
    """A sentence answering how far apart two dates are states the difference, and no year of another date."""
    stated = [int(v[0]) for at, v in values_in(text, "number") if not _is_year(text, at) and float(v[0]).is_integer()]
    if not stated:
        return None
    if comparison is None or comparison.winner is None:
        return Verdict(False, "the knowledge graph holds no date of one side")
    if not set(stated) & comparison.differences():
        return Verdict(False, f"the dates are {max(comparison.differences())} {comparison.question.unit} apart")
    years = {abs(side.value[0]) for side in comparison.sides} | set(stated)
    if not all(int(year) in years for year, _ in _YEAR.findall(text)):
        return Verdict(False, "the sentence states a year neither side's fact gives")
    first, second = _fact_reading(comparison.winner.fact, readings), _fact_reading(comparison.loser.fact, readings)
    if first is None or second is None:
        return Verdict(False, "a compared fact is not in the evidence")
    return Verdict(True, "", first.sentence, 1.0, {"comparison": "difference"}, also=(second.sentence,))


def lead(comparison: Comparison | None, readings: Sequence[Reading]) -> tuple[str, Verdict] | None:
    """The comparison as the answer, cited to both facts, when the knowledge graph holds both values."""
    if comparison is None or comparison.winner is None:
        return None
    first, second = _fact_reading(comparison.winner.fact, readings), _fact_reading(comparison.loser.fact, readings)
    if first is None or second is None:
        return None
    return describe(comparison), Verdict(True, "", first.sentence, 1.0, {"comparison": "facts"},
                                         also=(second.sentence,))


def check_choice(text: str, asked: ComparisonQuestion, frame: QuestionFrame, readings: Sequence[Reading]) -> Verdict | None:
    """The verdict on a sentence answering a choice ("Where is Portuguese the official language, Angola or
    Andorra?"): the thing it names first is its answer. A sentence of that thing's own article must speak of
    every relation word of the question, and none of the other thing's may (then the evidence cannot tell
    them apart: Andorra's article names Portuguese beside its official Catalan). None when it names neither."""
    chosen = first_named(text, asked)
    if chosen is None:
        return None

    def speaking(option: LinkedEntity) -> list[Reading]:
        return [r for r in readings if r.sentence.title == option.title and frame.relation_words and all(
            r.relation_hits.get(word, (0.0, 0))[0] >= RELATION_MATCH for word in frame.relation_words)]

    other = asked.options[1] if chosen is asked.options[0] else asked.options[0]
    backing = speaking(chosen)
    if not backing:
        return Verdict(False, f"no sentence of {chosen.title} says what the question asks of it")
    if speaking(other):
        return Verdict(False, f"sentences of both {chosen.title} and {other.title} speak of what the question asks")
    return Verdict(True, "", backing[0].sentence, 1.0, {"comparison": "choice"})
