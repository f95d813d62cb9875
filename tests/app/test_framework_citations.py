"""Citations read through the chatbot frameworks people point at ``/v1``, unchanged: the official ``openai``
client, LangChain's ``ChatOpenAI`` and LlamaIndex's ``OpenAILike``, plain and streamed.

The server is the real one (waitress, the views, the SSE framing); the engine is the deterministic stand-in
(``tests.helpers.app_fakes``), since the point is the protocol: its answer is two verified sentences, each
citing passage ``[1]`` of the Alabama article. A framework that is not installed is skipped: ``openai`` and
``langchain-openai`` are in the ``test`` extra; LlamaIndex's OpenAI integration pins ``openai<3``, so it lives
in an environment of its own (the ``llamaindex-test`` extra), whose Python ``KGQA_LLAMAINDEX_PYTHON`` names.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from pydantic import BaseModel
from tests.helpers.app_fakes import ALABAMA_URL, ANSWER, QUESTION, FakeEngine
from tests.helpers.app_live import live_server

from kgqa.settings import Settings

MESSAGES = [{"role": "user", "content": QUESTION}]
SENTENCES = ["Montgomery is the capital of Alabama [1].", "The state's rivers drain south into the Gulf of Mexico [1]."]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), rate_limit_per_minute=0)
    with live_server(settings, engine=FakeEngine(), ready_timeout=10) as url:
        yield f"{url}/v1"


def cited_spans(content: str, annotations: list[dict]) -> list[str]:
    """The sentences the ``url_citation`` annotations point at, after checking each names the Alabama article."""
    assert annotations, "no annotations"
    spans = []
    for note in annotations:
        assert note["type"] == "url_citation"
        cite = note["url_citation"]
        assert cite["url"] == ALABAMA_URL and cite["title"] == "Alabama"
        spans.append(content[cite["start_index"]:cite["end_index"]])
    return spans


def as_dicts(annotations) -> list[dict]:
    return [a if isinstance(a, dict) else a.model_dump() for a in annotations or []]


# --- the official openai client ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def openai_client(base_url):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=30)


def test_openai_plain_message_annotations(openai_client):
    message = openai_client.chat.completions.create(model="kgqa", messages=MESSAGES).choices[0].message
    assert message.content == ANSWER
    assert cited_spans(message.content, as_dicts(message.annotations)) == SENTENCES
    assert message.annotations[0].url_citation.url == ALABAMA_URL  # the package's own types, not a dict
    assert openai_client.chat.completions.create(model="kgqa", messages=MESSAGES).model_extra["citations"]


def test_openai_streamed_deltas_carry_the_annotations_of_their_sentence(openai_client):
    chunks = list(openai_client.chat.completions.create(model="kgqa", messages=MESSAGES, stream=True))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == ANSWER
    notes = [n for c in chunks if c.choices for n in (c.choices[0].delta.model_extra or {}).get("annotations", [])]
    assert cited_spans(content, notes) == SENTENCES
    assert [n["index"] for n in notes] == [0, 1]  # their places in the message's list, for clients that merge


def test_openai_stream_helper_final_completion_has_the_annotations(openai_client):
    with openai_client.chat.completions.stream(model="kgqa", messages=MESSAGES) as stream:
        for _ in stream:
            pass
        message = stream.get_final_completion().choices[0].message
    assert message.content == ANSWER
    assert cited_spans(message.content, as_dicts(message.annotations)) == SENTENCES


def test_an_abstention_cites_nothing_in_its_text(tmp_path):
    from tests.helpers.app_fakes import make_app, sse_events

    client = make_app(tmp_path / "data", FakeEngine(abstain=True), rate_limit_per_minute=0).test_client()
    body = client.post("/v1/chat/completions", json={"model": "kgqa", "messages": MESSAGES}).json
    assert body["abstained"] and body["citations"]  # the closest sources, listed but not cited by the text
    assert body["choices"][0]["message"]["annotations"] == []
    streamed = client.post("/v1/chat/completions", json={"model": "kgqa", "messages": MESSAGES, "stream": True})
    assert "annotations" not in streamed.get_data(as_text=True)


def test_a_sentence_citing_two_sources_gets_one_annotation_each():
    from tests.helpers.app_fakes import FACT, evidence_citation, fake_result

    from app.openai_compat import answer_annotations
    from kgqa.records import AnswerSentence, Citation

    fact = Citation(id="F1", kind="fact", title="Alabama", url=ALABAMA_URL + "#Infobox", snippet="capital: Montgomery",
                    score=0.8, triple_id=FACT.triple_id)
    result = fake_result(QUESTION).model_copy(update={
        "answer": "Alabama is a state. Montgomery is the capital of Alabama [1][F1].",
        "sentences": [AnswerSentence(text="Alabama is a state.", citations=[], supported=True, support=0.9),
                      AnswerSentence(text="Montgomery is the capital of Alabama.", citations=["1", "F1"],
                                     supported=True, support=0.9)],
        "citations": [evidence_citation("The state's rivers drain south into the Gulf of Mexico."), fact],
    })
    notes = [n.model_dump(exclude_none=True) for n in answer_annotations(result)]
    span = {"start_index": 20, "end_index": len(result.answer)}
    assert notes == [
        {"type": "url_citation", "url_citation": {**span, "url": ALABAMA_URL, "title": "Alabama"}},
        {"type": "url_citation", "url_citation": {**span, "url": ALABAMA_URL + "#Infobox", "title": "Alabama"}},
    ]


# --- LangChain ChatOpenAI ---------------------------------------------------------------------------------

class Source(BaseModel):
    id: str
    url: str
    title: str


class CitedAnswer(BaseModel):
    answer: str
    citations: list[Source]


@pytest.fixture(scope="module")
def chat_openai(base_url):
    langchain_openai = pytest.importorskip("langchain_openai")
    return langchain_openai.ChatOpenAI(base_url=base_url, api_key="unused", model="kgqa", max_retries=0, timeout=30)


def test_langchain_invoke_keeps_the_markers(chat_openai):
    # langchain-openai drops a Chat Completions message's annotations (it reads them from the Responses API
    # only): the text and its [n] markers arrive; the sources behind them come with structured output.
    assert chat_openai.invoke(QUESTION).content == ANSWER
    assert "".join(chunk.content for chunk in chat_openai.stream(QUESTION)) == ANSWER


def test_langchain_structured_output_reads_the_citations(chat_openai):
    structured = chat_openai.with_structured_output(CitedAnswer, method="json_schema")
    answer = structured.invoke(QUESTION)
    assert answer.answer == ANSWER
    assert [(s.id, s.url, s.title) for s in answer.citations] == [("1", ALABAMA_URL, "Alabama")]


def test_langchain_structured_output_streamed_ends_with_the_citations(chat_openai):
    structured = chat_openai.with_structured_output(CitedAnswer, method="json_schema")
    parts = list(structured.stream(QUESTION))
    assert parts[-1].answer == ANSWER and parts[-1].citations[0].url == ALABAMA_URL


def test_langchain_raw_json_mode_carries_sentences_and_citations(chat_openai):
    raw = chat_openai.bind(response_format={"type": "json_object"}).invoke(QUESTION)
    body = json.loads(raw.content)
    assert body["answer"] == ANSWER and body["citations"][0]["url"] == ALABAMA_URL
    assert [s["citations"] for s in body["sentences"]] == [["1"], ["1"]]


# --- LlamaIndex OpenAILike (in its own environment) -------------------------------------------------------

@pytest.fixture(scope="module")
def llamaindex_read(base_url):
    """What ``OpenAILike`` read (``tests/helpers/llamaindex_client.py``, run by ``KGQA_LLAMAINDEX_PYTHON``)."""
    python = os.environ.get("KGQA_LLAMAINDEX_PYTHON")
    if not python:
        pytest.skip("KGQA_LLAMAINDEX_PYTHON (a Python with llama-index-llms-openai-like) is not set")
    client = Path(__file__).parents[1] / "helpers" / "llamaindex_client.py"
    done = subprocess.run([python, str(client), base_url, QUESTION], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_llamaindex_chat_raw_message_has_the_annotations(llamaindex_read):
    chat = llamaindex_read["chat"]
    assert chat["content"] == ANSWER
    assert cited_spans(chat["content"], chat["annotations"]) == SENTENCES


def test_llamaindex_stream_chat_raw_deltas_have_the_annotations(llamaindex_read):
    streamed = llamaindex_read["stream_chat"]
    assert streamed["content"] == ANSWER
    assert cited_spans(streamed["content"], streamed["annotations"]) == SENTENCES


def test_llamaindex_defaults_get_a_json_404_naming_the_fix(llamaindex_read):
    for error in llamaindex_read["defaults_errors"].values():  # complete and chat both post to /v1/completions
        assert error["status"] == 404 and "is_chat_model=True" in error["message"]
