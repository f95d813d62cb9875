"""The official ``openai`` client against the real server, engine and sample knowledge base."""

from __future__ import annotations

import pytest
from tests.helpers.app_live import live_server

QUESTION = "What is the capital of Alabama?"
ALABAMA_URL = "https://en.wikipedia.org/wiki/Alabama"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(sample_kb):
    import openai

    settings = sample_kb.with_overrides(rate_limit_per_minute=0)
    with live_server(settings) as base_url:
        yield openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=300)


def _cited(content: str, citations: list[dict]) -> None:
    assert "Montgomery" in content
    assert any(c["url"] == ALABAMA_URL for c in citations), citations
    markers = {c["id"] for c in citations}
    assert any(f"[{m}]" in content for m in markers), content  # inline markers point into the citations


def _annotated(content: str, annotations) -> None:
    """OpenAI's url_citation annotations: each span is a sentence of the content ending with its source's marker."""
    assert annotations, "no annotations"
    for note in annotations:
        cite = (note if isinstance(note, dict) else note.model_dump())["url_citation"]
        url, start, end = cite["url"], cite["start_index"], cite["end_index"]
        assert url.startswith("https://en.wikipedia.org/wiki/") and content[start:end].endswith((".", "]"))
        assert "[" in content[start:end]


def test_models_are_listed(client):
    assert [m.id for m in client.models.list()] == ["kgqa"]


def test_non_streaming_completion_is_cited(client):
    completion = client.chat.completions.create(model="kgqa", messages=[{"role": "user", "content": QUESTION}])
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.role == "assistant"
    _cited(completion.choices[0].message.content, completion.model_extra["citations"])
    _annotated(completion.choices[0].message.content, completion.choices[0].message.annotations)


def test_stream_helper_final_completion_is_annotated(client):
    with client.chat.completions.stream(model="kgqa", messages=[{"role": "user", "content": QUESTION}]) as stream:
        message = stream.get_final_completion().choices[0].message
    assert "Montgomery" in message.content
    _annotated(message.content, message.annotations)


def test_streaming_completion_is_cited_and_matches(client):
    stream = client.chat.completions.create(
        model="kgqa", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    _cited(content, chunks[-1].model_extra["citations"])
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    _annotated(content, [note for delta in deltas for note in (delta.model_extra or {}).get("annotations", [])])
    # each verified sentence came as its own content chunk, with the evidence sentence behind its marker
    sentences = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert sentences and all(c.model_extra.get("citations") for c in sentences)
    for chunk in sentences:
        for citation in chunk.model_extra["citations"]:
            assert citation["sentence"] and f"[{citation['id']}]" in chunk.choices[0].delta.content


def test_client_sees_openai_style_errors(client):
    import openai

    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="kgqa", messages=[{"role": "user", "content": "x" * 5000}])
    assert "limit" in str(info.value)
