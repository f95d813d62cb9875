import re

import pytest

from kgqa.errors import InvalidQuestion
from kgqa.questions import validate_question


def test_a_question_is_stripped_and_kept():
    assert validate_question("  What is the capital of Alabama?\n", 100) == "What is the capital of Alabama?"


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("", "empty"),
        ("   \n\t", "empty"),
        ("x" * 101, "101 characters; the limit is 100"),
        (None, "must be a string"),
        (["What?"], "must be a string"),
        ("What is the capital of \ud800 Alabama?", "lone surrogate (U+D800)"),
        ("Who \udfff?", "lone surrogate"),
        ("Who\x00 wrote it?", "control character (U+0000)"),
        ("Who\x1b[31m wrote it?", "control character"),
        ("What is \U000e0080?", "unassigned code point"),
    ],
)
def test_unusable_questions_are_refused_with_a_reason(question, message):
    with pytest.raises(InvalidQuestion, match=re.escape(message)):
        validate_question(question, 100)


def test_ordinary_unicode_and_whitespace_pass():
    assert validate_question("Wer schrieb „Faust“?\tWhat is Zürich's 人口?", 100).startswith("Wer")


@pytest.mark.parametrize("invisible", [
    "\u202e", "\u202a", "\u202b", "\u202c", "\u202d",  # bidi embeddings and overrides
    "\u2066", "\u2067", "\u2068", "\u2069",  # bidi isolates
    "\u200b", "\u200c", "\u200d", "\u200e", "\u200f",  # zero-width space, joiners, direction marks
    "\ufeff", "\u2060", "\u061c",  # byte order mark, word joiner, Arabic letter mark
])
def test_invisible_formatting_characters_are_removed(invisible):
    question = f"{invisible}What is the capital of {invisible}Alabama?{invisible}"
    assert validate_question(question, 100) == "What is the capital of Alabama?"


def test_a_question_of_invisible_characters_only_is_empty():
    with pytest.raises(InvalidQuestion, match="empty"):
        validate_question("\u202e\u200b \ufeff", 100)


def test_the_length_limit_counts_what_remains():
    assert validate_question("\u200b" * 50 + "x" * 100, 100) == "x" * 100
