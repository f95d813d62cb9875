"""The whole engine on the real sample knowledge base with the real bundled LM."""

import re

import pytest

from qa.engine import QAEngine

pytestmark = pytest.mark.slow


class RecordingGenerator:
    """The real generator, remembering the prompts it was given so tests can check citations against them."""

    def __init__(self, inner):
        self._inner = inner
        self.prompts: list[str] = []

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def stream(self, messages, **knobs):
        self.prompts.append(messages[-1]["content"])
        return self._inner.stream(messages, **knobs)


@pytest.fixture(scope="module")
def engine(sample_kb):
    from models.lm.transformers_backend import TransformersGenerator

    settings = sample_kb.with_overrides(max_new_tokens=40)
    engine = QAEngine(settings, generator=RecordingGenerator(TransformersGenerator(settings)))
    engine.warm_up()
    return engine


def assert_citations_were_in_the_prompt(engine, result):
    prompt = engine.generator.prompts[-1]
    for citation in result.citations:
        line = next(l for l in prompt.splitlines() if l.startswith(f"[{citation.id}] "))
        assert citation.snippet.rstrip(" …")[:60] in line
    cited = {c.id for c in result.citations}
    for sentence in result.sentences:
        assert set(sentence.citations) <= cited
    assert set(re.findall(r"\[(F?\d+)\]", result.answer)) <= cited


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
    assert_citations_were_in_the_prompt(engine, result)


def test_who_wrote_animal_farm(engine):
    result = engine.ask("Who wrote Animal Farm?")
    assert not result.abstained and "George Orwell" in result.answer
    assert any(c.title == "Animal Farm" for c in result.citations)
    assert_citations_were_in_the_prompt(engine, result)


def test_unanswerable_question_abstains_with_closest_sources(engine):
    result = engine.ask("Who won the 2030 FIFA World Cup?")
    assert result.abstained and result.abstain_reason
    assert result.answer.startswith("The knowledge base does not say")
    assert result.citations and all(c.kind == "passage" for c in result.citations)
    assert_citations_were_in_the_prompt(engine, result) if result.generated else None


def test_streamed_text_equals_the_non_streamed_text(engine):
    question = "Where was Albert Einstein born?"
    events = list(engine.ask_stream(question))
    tokens = [e.text for e in events if e.type == "token"]
    assert events[-1].type == "result" and len(tokens) > 1
    streamed = events[-1].result
    assert "".join(tokens) == streamed.generated
    plain = engine.ask(question)
    assert plain.generated == streamed.generated and plain.answer == streamed.answer
