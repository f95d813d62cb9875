"""Through the real server (waitress): each verified sentence reaches the client while the answer is still generating.

The fake engine holds its stream right after the first verified sentence until the test
lets it go, so a first sentence read before that moment proves it was sent at once.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlparse

import pytest
from tests.helpers.app_fakes import ANSWER, PASSAGE_TEXT, QUESTION, TOKENS, UNVERIFIED, FakeEngine
from tests.helpers.app_live import live_server

from kgqa.settings import Settings

ASK, CHAT = "/api/v1/ask", "/v1/chat/completions"
FIRST = "Montgomery is the capital of Alabama [1]."


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    engine = FakeEngine()
    settings = Settings(data_dir=tmp_path_factory.mktemp("stream") / "data", rate_limit_per_minute=0)
    with live_server(settings, engine=engine, ready_timeout=10) as url:
        yield engine, url


def _post_stream(url: str, path: str) -> http.client.HTTPResponse:
    body = ({"model": "kgqa", "messages": [{"role": "user", "content": QUESTION}], "stream": True} if path == CHAT
            else {"question": QUESTION, "stream": True})
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/event-stream")
    return response


def _payloads(response: http.client.HTTPResponse):
    """The ``data:`` payloads as they arrive (keep-alive comments skipped)."""
    while line := response.readline():
        if line.startswith(b"data: "):
            yield line[6:].decode().rstrip("\n")


def _content(payload: str) -> str:
    return json.loads(payload)["choices"][0]["delta"].get("content") or ""


@pytest.mark.parametrize("path", [ASK, CHAT])
def test_the_first_sentence_arrives_before_generation_ends(served, path):
    engine, url = served
    engine.first_sentence.clear()
    engine.resumed.clear()
    engine.hold.clear()  # the engine stops after its first verified sentence until set
    try:
        response = _post_stream(url, path)
        payloads = _payloads(response)
        first = next(payloads)
        if path == CHAT:
            assert json.loads(first)["choices"][0]["delta"] == {"role": "assistant", "content": ""}
            first = next(payloads)
        # read while the engine is still held: the rest of the answer does not exist yet
        assert engine.first_sentence.is_set() and not engine.resumed.is_set()
        event = json.loads(first)
        if path == CHAT:
            assert _content(first) == FIRST
        else:
            assert event["type"] == "sentence" and event["text"] == FIRST
        [citation] = event["citations"]
        assert PASSAGE_TEXT[citation["sentence_start"]:citation["sentence_end"]] == citation["sentence"]
    finally:
        engine.hold.set()
    rest = list(payloads)
    if path == CHAT:
        assert rest[-1] == "[DONE]"
        assert FIRST + "".join(_content(p) for p in rest[:-1]) == ANSWER
    else:
        assert [json.loads(p)["type"] for p in rest] == ["sentence", "result"]
        assert json.loads(rest[-1])["result"]["answer"] == ANSWER


def test_openai_content_is_never_the_lm_raw_text(served):
    engine, url = served
    payloads = list(_payloads(_post_stream(url, CHAT)))
    contents = [_content(p) for p in payloads[:-1] if _content(p)]
    assert "".join(contents) == ANSWER
    assert not any(UNVERIFIED in c for c in contents)
    assert not set(contents) & set(TOKENS)  # no content chunk is a raw token


@pytest.mark.slow
@pytest.mark.parametrize("path", [ASK, CHAT])
def test_the_real_engine_sends_a_checked_sentence_before_the_draft_ends(sample_kb, path):
    """The real engine on the sample, with a stand-in LM held mid-draft: the LM's first sentence, checked and
    cited, reaches the client while the LM is still writing; the OpenAI role chunk comes first, at once."""
    from qa.engine import QAEngine
    from tests.helpers.held_generator import HeldGenerator

    generator = HeldGenerator(["Achilles' mother was the nymph Thetis.", "She was a sea goddess."])
    settings = sample_kb.with_overrides(rate_limit_per_minute=0)
    with live_server(settings, engine=QAEngine(settings, generator=generator)) as url:
        question = "Who was Achilles' mother?"
        body = ({"model": "kgqa", "messages": [{"role": "user", "content": question}], "stream": True}
                if path == CHAT else {"question": question, "stream": True})
        parsed = urlparse(url)
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        try:
            conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            payloads = _payloads(conn.getresponse())
            if path == CHAT:
                assert json.loads(next(payloads))["choices"][0]["delta"]["role"] == "assistant"
            first = json.loads(next(payloads))
            assert not generator.finished.is_set()  # the LM is still writing
            text = _content(json.dumps(first)) if path == CHAT else first["text"]
            assert text.startswith("Achilles' mother was the nymph Thetis [")
            [citation] = first["citations"]
            assert "Thetis" in citation["sentence"]
            generator.go.set()
            rest = list(payloads)
        finally:
            generator.go.set()
            conn.close()
        if path == CHAT:
            assert rest[-1] == "[DONE]"
        else:
            assert json.loads(rest[-1])["type"] == "result"
