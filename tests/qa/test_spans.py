"""Answer spans copied from evidence sentences: which spans are candidates, how the LM's scores pick one."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kgqa.records import LinkedEntity, PassageHit
from models.lm.scoring import Scored
from qa.answer import AnswerComposer
from qa.budget import Evidence
from qa.claims import ClaimVerifier, frame_question
from qa.spans import Span, SpanScorer, enumerate_spans
from qa.tuning import SPAN_STARTS
from tests.qa.test_answer import RULES, fake_encode

URL = "https://en.wikipedia.org/wiki/Achilles"
ACHILLES = [LinkedEntity(entity_id=305, title="Achilles", mention="Achilles", alias="Achilles", url=URL)]
MOTHER = "His mother was the nymph Thetis, and his father, Peleus, was the king of the Myrmidons."


def spans_of(sentence: str, question: str, entities=ACHILLES, title: str = "Achilles") -> list[Span]:
    return enumerate_spans(sentence, frame_question(question, entities), title=title)


def test_spans_are_exact_substrings_at_their_offsets_and_start_and_end_on_content():
    spans = spans_of(MOTHER, "Who was Achilles' mother?")
    assert spans
    for span in spans:
        assert MOTHER[span.start:span.end] == span.text
        assert span.text.split()[0].lower() not in {"the", "and", "his", "of", "was"}
        assert span.text.split()[-1].lower() not in {"the", "and", "his", "of", "was"}
    texts = {s.text for s in spans}
    assert {"Thetis", "nymph Thetis", "Peleus", "Myrmidons"} <= texts
    assert "mother" not in texts  # the question's own word adds nothing
    assert not any("." in t for t in texts)  # no span runs past the sentence's end


def test_the_subject_given_back_is_never_a_candidate():
    sentence = "Achilles was a Greek hero of the Trojan War, the son of Peleus."
    texts = {s.text for s in spans_of(sentence, "Who was the father of Achilles?")}
    assert "Achilles" not in texts
    assert "Peleus" in texts and "Trojan War" in texts


def test_the_kind_asked_for_filters_spans():
    sentence = "Achilles was born in 1250 BC in Phthia and died at Troy."
    dates = {s.text for s in spans_of(sentence, "When was Achilles born?")}
    assert dates and all("1250" in t for t in dates)
    places = {s.text for s in spans_of(sentence, "Where did Achilles die?")}
    assert "Troy" in places and "Phthia" in places
    assert not any(t.startswith("Achilles") for t in dates | places)  # the subject begins no answer


def test_a_span_stops_at_a_clause_mark_and_after_the_word_limit():
    sentence = "The aardvark (an African mammal) eats ants, termites and beetles; it digs burrows."
    texts = {s.text for s in enumerate_spans(sentence, frame_question("What does the aardvark eat?"), max_words=4)}
    assert "ants, termites and beetles" in texts
    assert not any("(" in t or ")" in t or ";" in t for t in texts)
    assert all(len(t.replace(",", "").split()) <= 4 for t in texts)


class FakeLM:
    """``score(messages, continuations)`` that likes one phrase, more so when the question is asked."""

    def __init__(self, liked: str):
        self.liked = liked
        self.calls: list[tuple[bool, list[str]]] = []

    def __call__(self, messages, continuations):
        asked = "Question:" in messages[-1]["content"]
        self.calls.append((asked, list(continuations)))
        scored = []
        for text in continuations:
            ends = tuple(i + 1 for i, ch in enumerate(text) if i + 1 == len(text) or text[i + 1] in " ,")
            liked = text.startswith(self.liked) or self.liked.startswith(text)
            logprobs = tuple(-0.1 if liked else -3.0 for _ in ends)
            stops = tuple((-0.1 if asked else -1.0) if text[:end] == self.liked else -4.0 for end in ends)
            scored.append(Scored(text, ends, logprobs, stops))
        return scored


def test_spans_sharing_a_start_are_scored_on_one_continuation_and_cached():
    lm = FakeLM("nymph Thetis")
    scorer = SpanScorer(lm)
    spans = spans_of(MOTHER, "Who was Achilles' mother?")
    scored = scorer.scored("Who was Achilles' mother?", MOTHER, spans)
    starts = {s.start for s in spans}
    assert len(starts) > SPAN_STARTS
    assert len(lm.calls) == 3  # first words, then spans with and without the question
    assert len(lm.calls[0][1]) == len(starts) and all(" " not in t for t in lm.calls[0][1])
    assert all(len(texts) == SPAN_STARTS for _, texts in lm.calls[1:])
    best = max(scored, key=lambda s: s.value("mean"))
    assert best.span.text == "nymph Thetis"
    assert best.value("total") == pytest.approx(-0.1 * 2 - 0.1) and best.tokens == 3
    assert best.value("mean") == pytest.approx((-0.1 * 2 - 0.1) / 3)
    assert best.value("pmi") == pytest.approx(-0.1 * 2 - 0.1 - (-0.1 * 2 - 1.0))
    scorer.scored("Who was Achilles' mother?", MOTHER, spans)
    assert len(lm.calls) == 3


PASSAGE = PassageHit(passage_id="305:1:0:0", page_id=305, title="Achilles", section="", score=0.03, url=URL,
                     text=f"In Greek mythology, Achilles was a hero of the Trojan War. {MOTHER}")


def test_the_best_span_is_the_answer_copied_from_its_sentence_and_cited_to_it():
    rules = replace(RULES, span_score="mean", span_min_score=-1.0)
    composer = AnswerComposer(ClaimVerifier(fake_encode, rules), SpanScorer(FakeLM("nymph Thetis")))
    result = composer.compose("Who was Achilles' mother?", "I am not sure.", Evidence(passages=[PASSAGE]), ACHILLES)
    assert not result.abstained
    assert result.answer == "nymph Thetis [1]"
    citation = result.citations[0]
    assert citation.sentence == MOTHER
    assert PASSAGE.text[citation.sentence_start:citation.sentence_end] == MOTHER


def test_a_span_below_the_threshold_or_with_spans_off_is_not_shown():
    for rules in (replace(RULES, span_score="mean", span_min_score=-0.01), RULES):
        composer = AnswerComposer(ClaimVerifier(fake_encode, rules), SpanScorer(FakeLM("nymph Thetis")))
        result = composer.compose("Who was Achilles' mother?", "", Evidence(passages=[PASSAGE]), ACHILLES)
        assert "Thetis" not in result.answer


@pytest.mark.slow
def test_the_real_lm_picks_the_answer_span(project_settings):
    from models.lm.local_generator import LocalGenerator

    generator = LocalGenerator(project_settings, batch_size=1)
    try:
        question = "Who was Achilles' mother?"
        scored = SpanScorer(generator.score).scored(question, MOTHER, spans_of(MOTHER, question))
        best = max(scored, key=lambda s: s.value("pmi"))
        assert "Thetis" in best.span.text
        assert MOTHER[best.span.start:best.span.end] == best.span.text
    finally:
        generator.close()
