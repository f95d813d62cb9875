"""The whole engine on the real sample knowledge base with the real bundled LM."""

import re

import pytest

from qa.engine import QAEngine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(sample_kb):
    settings = sample_kb.with_overrides(max_new_tokens=40)
    engine = QAEngine(settings)
    engine.warm_up()
    return engine


def assert_citations_are_what_was_read(engine, result):
    """Every marker of the answer is a citation, and every passage cited is one retrieval gave the reader."""
    cited = {c.id for c in result.citations}
    for sentence in result.sentences:
        assert set(sentence.citations) <= cited
    assert set(re.findall(r"\[(F?\d+)\]", result.answer)) <= cited
    read = [p.passage_id for p in engine.retrieve(result.question, k=engine.settings.top_k, mode="graph")]
    for citation in result.citations:
        if citation.kind == "passage":
            assert citation.passage_id == read[int(citation.id) - 1]


def test_capital_of_alabama(engine):
    result = engine.ask("What is the capital of Alabama?")
    assert not result.abstained
    assert "Montgomery" in result.answer
    first = result.sentences[0]
    assert "Montgomery" in first.text and first.citations
    cited = {c.id: c for c in result.citations}[first.citations[0]]
    assert cited.title == "Alabama" and cited.url == "https://en.wikipedia.org/wiki/Alabama"
    assert [e.title for e in result.entities] == ["Alabama"]
    assert result.timings.total > 0 and result.model and result.device
    assert_citations_are_what_was_read(engine, result)


def test_who_wrote_animal_farm(engine):
    result = engine.ask("Who wrote Animal Farm?")
    assert not result.abstained and "George Orwell" in result.answer
    assert any(c.title == "Animal Farm" for c in result.citations)
    assert_citations_are_what_was_read(engine, result)


def test_unanswerable_question_abstains_with_closest_sources(engine):
    result = engine.ask("Who won the 2030 FIFA World Cup?")
    assert result.abstained and result.abstain_reason
    assert result.answer.startswith("The knowledge base does not say")
    assert result.citations and all(c.kind == "passage" for c in result.citations)
    assert_citations_are_what_was_read(engine, result)


def test_streamed_text_equals_the_non_streamed_text(engine):
    question = "What did Albert Einstein develop?"  # no infobox fact answers it, so the LM drafts
    events = list(engine.ask_stream(question))
    tokens = [e.text for e in events if e.type == "token"]
    assert events[-1].type == "result" and len(tokens) > 1
    streamed = events[-1].result
    assert "".join(tokens) == streamed.generated
    plain = engine.ask(question)
    assert plain.generated == streamed.generated and plain.answer == streamed.answer


def assert_every_sentence_stands_on_its_cited_sentence(engine, result):
    """Each shown sentence cites one evidence sentence, at the offsets it claims, holding what it adds."""
    from kg.queries import get_passage
    from kgqa.text import content_words

    cited = {c.id: c for c in result.citations}
    question_words = set(content_words(result.question))
    for sentence in result.sentences:
        assert len(sentence.citations) == 1
        citation = cited[sentence.citations[0]]
        assert citation.sentence
        if citation.kind == "passage":
            with engine._kb.session() as session:
                passage = get_passage(session, citation.passage_id)
            assert passage.text[citation.sentence_start:citation.sentence_end] == citation.sentence
        evidence_words = set(content_words(citation.sentence)) | set(content_words(citation.title))
        added = set(content_words(sentence.text)) - question_words
        assert len(added & evidence_words) >= 0.6 * len(added), (sentence.text, citation.sentence)


# Questions a new user asked of the sample knowledge base, and what each must never say.
TRUST_CASES = [
    ("When was Albert Einstein born?", ["1879"], ["1955"]),
    ("What does an abacus do?", ["calculat", "count", "arithmetic", "comput"], ["display numbers and letters"]),
    ("What is anarchism?", ["anarchism"], ["use of violence and resistance"]),
    ("Who was Aristotle's teacher?", ["Plato"], ["Dioscoro", "Theophrastus"]),
    ("How many people live in Alabama?", ["4,858,979", "4,779,736", "4.8 million", "4.9 million"], ["67 counties"]),
    ("Where was Aristotle born?", ["Stagira"], ["birth date"]),  # never the date alone
]


@pytest.mark.parametrize(("question", "any_of", "never"), TRUST_CASES, ids=[c[0] for c in TRUST_CASES])
def test_a_correct_cited_answer_or_an_honest_abstention(engine, question, any_of, never):
    result = engine.ask(question)
    for phrase in never:
        assert phrase not in result.answer
    if result.abstained:
        assert result.answer.startswith("The knowledge base does not say") and result.abstain_reason
        return
    assert any(phrase.lower() in result.answer.lower() for phrase in any_of), result.answer
    assert_every_sentence_stands_on_its_cited_sentence(engine, result)


def test_verified_sentences_stream_before_the_result(engine):
    events = list(engine.ask_stream("Who was Albert Einstein married to?"))
    kinds = [e.type for e in events]
    assert "sentence" in kinds and kinds.index("sentence") < kinds.index("result")
    result = events[-1].result
    streamed = [e.sentence.text for e in events if e.type == "sentence"]
    assert streamed == [s.text for s in result.sentences]
    assert 0 < result.timings.first_sentence <= result.timings.total


def test_a_checked_sentence_is_sent_before_the_draft_ends(sample_kb):
    from tests.helpers.held_generator import HeldGenerator

    generator = HeldGenerator(["Achilles' mother was the nymph Thetis.", "She was a sea goddess."])
    engine = QAEngine(sample_kb, generator=generator)
    events = engine.ask_stream("Who was Achilles' mother?")
    try:
        first = next(e for e in events if e.type == "sentence")
        assert not generator.finished.is_set()  # the draft is still being written
        assert first.sentence.text == "Achilles' mother was the nymph Thetis."
        [citation] = first.citations
        assert "Thetis" in citation.sentence and citation.title == "Achilles"
    finally:
        generator.go.set()
    result = [e for e in events if e.type == "result"][0].result
    assert result.answer.startswith("Achilles' mother was the nymph Thetis [")


def test_a_capable_models_right_claim_is_shown_and_its_wrong_one_dropped(sample_kb, engine):
    from evaluation.claim_set import ClaimRecord, QuestionClaims, StandInGenerator

    claims = {"a": QuestionClaims(id="a", question="Who was Achilles' mother?", claims=[
        ClaimRecord(text="Achilles' mother was the nymph Thetis.", label="right"),
        ClaimRecord(text="Achilles' mother was Peleus.", label="wrong", kind="same-article")])}
    generator = StandInGenerator(claims)
    assert len(generator.draft_for("Who was Achilles' mother?")) == 2
    result = QAEngine(sample_kb, generator=generator).ask("Who was Achilles' mother?")
    assert not result.abstained and result.answer.startswith("Achilles' mother was the nymph Thetis [")
    assert "Peleus" not in result.answer and result.dropped_sentences == ["Achilles' mother was Peleus."]
    [citation] = result.citations
    assert "Thetis" in citation.sentence and citation.title == "Achilles"
    assert_every_sentence_stands_on_its_cited_sentence(engine, result)
