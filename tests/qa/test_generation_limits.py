"""How the engine reads the LM's stream: it stops a rambling model and an echo of the prompt.

A scripted generator stands in for the LM so the test can see exactly how much of
the stream the engine read and whether it let the rest go; the knowledge base is
the real sample.
"""

from __future__ import annotations

import pytest

from qa.engine import ECHO_STOPS, MAX_ANSWER_SENTENCES, QAEngine

pytestmark = pytest.mark.slow


class ScriptedGenerator:
    """Streams fixed pieces and records how many were read and whether the stream was closed."""

    model_name, backend, device, attention = "scripted", "scripted", "cpu", "none"

    def __init__(self, pieces: list[str]):
        self.pieces = pieces
        self.read = 0
        self.closed = False
        self.knobs: dict = {}

    def warm_up(self) -> None:
        pass

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(self, messages, **knobs):
        self.knobs = knobs

        def pieces():
            try:
                for piece in self.pieces:
                    self.read += 1
                    yield piece
            finally:
                self.closed = True

        return pieces()


def ask(sample_kb, pieces: list[str], question: str):
    generator = ScriptedGenerator(pieces)
    engine = QAEngine(sample_kb, generator=generator)
    return engine.ask(question), generator


def test_a_rambling_model_is_cut_after_a_few_sentences(sample_kb):
    sentence = ["Einstein", " developed", " the", " theory", " of", " relativity", "."]
    pieces = [" " + word if i and not word.startswith((" ", ".")) else word
              for i, word in enumerate(sentence * 20)]
    result, generator = ask(sample_kb, pieces, "What did Albert Einstein develop?")  # no fact answers outright
    assert generator.closed
    assert generator.read < len(sentence) * (MAX_ANSWER_SENTENCES + 2)  # stopped early, not after 20 sentences
    assert len(result.dropped_sentences) <= MAX_ANSWER_SENTENCES  # the reader weighs at most the cap
    assert result.abstained or len(result.sentences) == 1  # one evidence sentence, as written


def test_the_model_is_told_to_stop_at_an_echo_of_the_evidence_block(sample_kb):
    result, generator = ask(sample_kb, [], "What did Albert Einstein develop?")
    assert set(ECHO_STOPS) <= set(generator.knobs["stop"])
    assert "<evidence>" not in result.answer


def test_a_fact_that_answers_outright_needs_no_generation(sample_kb):
    result, generator = ask(sample_kb, [" Orwell", " wrote", " it", "."], "Who wrote Animal Farm?")
    assert "George Orwell" in result.answer and not result.abstained
    assert generator.read == 0 and result.generated == ""
