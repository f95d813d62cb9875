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
    sentence = ["Montgomery", " is", " the", " capital", " of", " Alabama", "."]
    pieces = [" " + word if i and not word.startswith((" ", ".")) else word
              for i, word in enumerate(sentence * 20)]
    result, generator = ask(sample_kb, pieces, "What is the capital of Alabama?")
    assert generator.closed
    assert generator.read < len(sentence) * (MAX_ANSWER_SENTENCES + 2)  # stopped early, not after 20 sentences
    assert not result.abstained and "Montgomery" in result.answer
    assert len(result.sentences) <= MAX_ANSWER_SENTENCES + 1  # the leading fact plus at most the cap


def test_the_model_is_told_to_stop_at_an_echo_of_the_evidence_block(sample_kb):
    result, generator = ask(sample_kb, [], "Who wrote Animal Farm?")
    assert set(ECHO_STOPS) <= set(generator.knobs["stop"])
    assert "George Orwell" in result.answer  # with nothing generated, the fact that answers still leads
    assert "<evidence>" not in result.answer
