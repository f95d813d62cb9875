"""What a question must be before anything works on it: the one validation, shared by every caller."""

from __future__ import annotations

import unicodedata

from kgqa.errors import InvalidQuestion

# Unicode categories no question needs: unpaired surrogates (Cs), unassigned code points (Cn)
# and control characters (Cc) other than ordinary whitespace.
_REFUSED_CATEGORIES = {"Cs": "a lone surrogate", "Cn": "an unassigned code point", "Cc": "a control character"}
_ALLOWED_CONTROLS = {"\t", "\n", "\r"}


def validate_question(question: object, max_chars: int) -> str:
    """The question stripped of surrounding whitespace, or ``InvalidQuestion`` saying what is wrong.

    Refused: a non-string, an empty or blank question, one longer than ``max_chars``
    characters, and one holding a code point no text encoder accepts (a lone surrogate
    such as ``"\\ud800"``, an unassigned code point, a control character).
    """
    if not isinstance(question, str):
        raise InvalidQuestion(f"the question must be a string, not {type(question).__name__}")
    text = question.strip()
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
