"""What a question must be before anything works on it: the one validation, shared by every caller."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from kgqa.errors import InvalidQuestion
from kgqa.text import fold

# Unicode categories no question needs: unpaired surrogates (Cs), unassigned code points (Cn)
# and control characters (Cc) other than ordinary whitespace.
_REFUSED_CATEGORIES = {"Cs": "a lone surrogate", "Cn": "an unassigned code point", "Cc": "a control character"}
_ALLOWED_CONTROLS = {"\t", "\n", "\r"}
# Invisible formatting characters, removed: bidirectional embeddings, overrides and isolates
# (U+202A-U+202E, U+2066-U+2069), which can make text read otherwise than it is; zero-width
# spaces, joiners and direction marks (U+200B-U+200F); the word joiner and invisible operators
# (U+2060-U+2064); the Arabic letter mark (U+061C); a byte order mark (U+FEFF). A question
# pasted from a page often carries some; none changes what it asks, and none is echoed back.
INVISIBLE = re.compile("[\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def validate_question(question: object, max_chars: int) -> str:
    """The question without its ``INVISIBLE`` characters and surrounding whitespace, or ``InvalidQuestion``.

    Refused: a non-string, an empty or blank question, one longer than ``max_chars``
    characters, and one holding a code point no text encoder accepts (a lone surrogate
    such as ``"\\ud800"``, an unassigned code point, a control character).
    """
    if not isinstance(question, str):
        raise InvalidQuestion(f"the question must be a string, not {type(question).__name__}")
    text = INVISIBLE.sub("", question).strip()
    if not text:
        raise InvalidQuestion("the question is empty")
    if len(text) > max_chars:
        raise InvalidQuestion(f"the question has {len(text)} characters; the limit is {max_chars}")
    for position, char in enumerate(text):
        category = unicodedata.category(char)
        if category in _REFUSED_CATEGORIES and char not in _ALLOWED_CONTROLS:
            raise InvalidQuestion(
                f"the question holds {_REFUSED_CATEGORIES[category]} (U+{ord(char):04X}) at character {position}"
            )
    return text


# The noun after "which"/"what"/"in which" that says what kind of thing is asked for.
_TYPE_NOUNS = {
    "date": frozenset("year years date day decade century month".split()),
    "number": frozenset("number percentage percent population amount".split()),
    "place": frozenset("city town country place state region province capital continent island river".split()),
    "name": frozenset("person man woman king queen president leader author writer director player".split()),
}
_MEASURES = frozenset("many much long old far tall large big".split())
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


@dataclass(frozen=True)
class AskedKind:
    """The kind of answer a question asks for, and the noun that names it ("In what *year* …"), if any.

    ``kind`` is one of date, number, name, place, reason, other. This is the one reading of a
    question's form: fact ranking, the claim checks and the reader all take it from here.
    """

    kind: str
    type_noun: str = ""


def asked_kind(question: str) -> AskedKind:
    words = [w.lower() for w in _WORD.findall(question)]
    head = words[:3]
    typed = None
    if "which" in head or "what" in head:
        start = max(words.index(w) for w in ("which", "what") if w in head) + 1
        typed = next(((kind, fold(noun)) for noun in words[start:start + 2] for kind, nouns in _TYPE_NOUNS.items()
                      if noun in nouns or fold(noun) in nouns), None)
    noun = typed[1] if typed else ""
    if "why" in head:
        return AskedKind("reason", noun)
    if "when" in head:
        return AskedKind("date", noun)
    if "how" in head and any(w in _MEASURES for w in words[:4]):
        return AskedKind("number", noun)
    if "who" in head or "whom" in head:
        return AskedKind("name", noun)
    if "where" in head:
        return AskedKind("place", noun)
    return AskedKind(typed[0], noun) if typed else AskedKind("other")
