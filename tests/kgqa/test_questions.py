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
