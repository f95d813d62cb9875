"""A question's cost is bounded in the LM's tokens, not in characters: dense text is refused with the limit named."""

from __future__ import annotations

import logging

import pytest

from tests.helpers.app_fakes import FakeEngine, make_app

CJK = "Who wrote Animal Farm? " + "\u9f98" * 970  # 993 characters, 2,915 tokens of the sample's LM
MARKS = "a" + "\u0301" * 999  # 1,000 characters, 1,999 tokens
ENGLISH = ("What is the capital of the state that borders Tennessee to the north and Georgia to the east? " * 11)[:1000]


class CountingGenerator:
    """Counts a token per word (and records the texts counted), or fails as an LM server that is away."""

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.counted: list[str] = []

    def count_tokens(self, text: str) -> int:
        if self.fail:
            raise ConnectionError("LM server unreachable")
        self.counted.append(text)
        return len(text.split())


class TokenEngine(FakeEngine):
    def __init__(self, generator=None):
        super().__init__()
        self.generator = generator


def client_for(tmp_path, engine=None):
    return make_app(tmp_path / "data", engine or FakeEngine(), rate_limit_per_minute=0).test_client()


def chat(question: str, history=()) -> dict:
    return {"model": "kgqa", "messages": [*history, {"role": "user", "content": question}]}


@pytest.mark.parametrize("question", [CJK, MARKS], ids=["cjk", "combining marks"])
def test_a_short_question_of_dense_text_is_refused_naming_the_token_limit(tmp_path, question):
    client = client_for(tmp_path)
    asked = client.post("/api/v1/ask", json={"question": question})
    assert asked.status_code == 422
    error = asked.get_json()["error"]
    assert error["code"] == "invalid_question" and "KGQA_MAX_QUESTION_TOKENS" in error["message"]
    assert "the limit is 256 tokens" in error["message"]
    completion = client.post("/v1/chat/completions", json=chat(question))
    assert completion.status_code == 400 and "KGQA_MAX_QUESTION_TOKENS" in completion.get_data(as_text=True)


def test_a_long_english_question_within_the_character_limit_is_answered(tmp_path):
    client = client_for(tmp_path)
    assert client.post("/api/v1/ask", json={"question": ENGLISH}).status_code == 200
    assert client.post("/v1/chat/completions", json=chat(ENGLISH)).status_code == 200


def test_the_lm_tokenizer_refuses_what_the_byte_bound_lets_through(tmp_path):
    generator = CountingGenerator()
    client = client_for(tmp_path, TokenEngine(generator))
    assert client.post("/api/v1/ask", json={"question": "Who wrote Animal Farm?"}).status_code == 200
    assert generator.counted == ["Who wrote Animal Farm?"]
    many_words = "a " * 300  # 600 bytes: within the byte bound, 300 tokens by this tokenizer
    refused = client.post("/api/v1/ask", json={"question": many_words})
    assert refused.status_code == 422
    assert refused.get_json()["error"]["message"] == "the question has 300 tokens; the limit is 256 (KGQA_MAX_QUESTION_TOKENS)"


def test_a_tokenizer_that_fails_leaves_the_byte_bound_in_force(tmp_path, caplog):
    client = client_for(tmp_path, TokenEngine(CountingGenerator(fail=True)))
    with caplog.at_level(logging.WARNING, logger="app.limits"):
        assert client.post("/api/v1/ask", json={"question": "Who wrote Animal Farm?"}).status_code == 200
    assert "tokens not counted (ConnectionError" in caplog.text
    assert client.post("/api/v1/ask", json={"question": CJK}).status_code == 422


def test_the_history_the_prompt_keeps_is_limited_together(tmp_path):
    client = client_for(tmp_path, TokenEngine(CountingGenerator()))
    dense = [{"role": "user", "content": "\u9f98" * 400}, {"role": "assistant", "content": "\u9f98" * 400}]
    refused = client.post("/api/v1/ask", json={"question": "And Orwell?", "history": dense})
    assert refused.status_code == 422
    assert "history" in refused.get_json()["error"]["message"]
    assert "KGQA_MAX_HISTORY_TOKENS" in refused.get_json()["error"]["message"]
    assert client.post("/v1/chat/completions", json=chat("And Orwell?", dense)).status_code == 400
    older = dense + [{"role": "user", "content": "Who is he?"}] * 4
    assert client.post("/api/v1/ask", json={"question": "And Orwell?", "history": older}).status_code == 200  # dropped
    long = [{"role": "user", "content": "word " * 2000}] * 4  # each cut to 600 characters (120 words) by the prompt
    assert client.post("/api/v1/ask", json={"question": "And Orwell?", "history": long}).status_code == 422


@pytest.mark.slow
def test_the_sample_lms_tokenizer_counts_the_dense_questions_and_the_heaviest_allowed_is_cheap(sample_kb):
    """The real engine: the questions the audit sent cost 2,000-2,900 tokens and are refused; the heaviest one
    allowed costs its own tokens, the instructions and the evidence budget, no more."""
    from app import create_app

    app = create_app(sample_kb.with_overrides(rate_limit_per_minute=0))
    assert app.extensions["kgqa_runtime"].wait_ready(300)
    client = app.test_client()
    count = app.extensions["kgqa_runtime"].engine().generator.count_tokens
    assert count(CJK) > 2000 and count(MARKS) > 1000 and count(ENGLISH) < 256
    heaviest = "Who wrote Animal Farm? " + "\u9f98" * 82  # just within the limit
    assert 240 <= count(heaviest) <= 256

    def prompt_tokens(question: str) -> int:
        reply = client.post("/v1/chat/completions",
                            json={"model": "kgqa", "messages": [{"role": "user", "content": question}]})
        assert reply.status_code == 200, reply.get_json()
        return reply.get_json()["usage"]["prompt_tokens"]

    assert client.post("/api/v1/ask", json={"question": CJK}).status_code == 422
    assert client.post("/api/v1/ask", json={"question": MARKS}).status_code == 422
    # What the heaviest allowed question costs is bounded in tokens: the instructions, its own 256 and
    # evidence within the same budget as any question's (and the chat template's few). Speed is measured in bench/.
    from qa.budget import evidence_budget
    from qa.prompt import SYSTEM_PROMPT

    engine = app.extensions["kgqa_runtime"].engine()
    budget = evidence_budget(engine.settings.evidence_tokens, engine.generator.device)
    assert prompt_tokens(heaviest) <= count(SYSTEM_PROMPT) + 256 + budget + 64
