"""``OpenAIGenerator`` against a real OpenAI-compatible server and against a misbehaving one.

The real server is llama.cpp's (``python -m models.lm.llamacpp``, the xllamacpp wheel)
running the bundled GGUF on a free loopback port, started once for the session. The
misbehaving one is a tiny ``http.server`` in the test that answers what each test scripts:
garbage, 5xx, 429, 4xx, silence, a stream cut short.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2
import pytest

from kgqa.assets import bundled_gguf_path
from kgqa.errors import LMServerError, LMServerUnavailable
from kgqa.settings import Settings
from models.lm.remote import CHARS_PER_TOKEN, OpenAIGenerator
from tests.helpers.fake_lm_server import FakeLMServer

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
COUNTING = [{"role": "user", "content": "Count from 1 to 500, separated by commas."}]
PROJECT_ROOT = Path(__file__).resolve().parents[2]


# -- a scripted server -------------------------------------------------------------------------

Reply = Callable[[BaseHTTPRequestHandler], None]


def json_reply(status: int, payload, headers: dict | None = None) -> Reply:
    return raw_reply(status, json.dumps(payload).encode(), "application/json", headers)


def raw_reply(status: int, body: bytes, content_type: str, headers: dict | None = None) -> Reply:
    def reply(handler):
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)
    return reply


def completion(text: str, finish: str = "stop") -> dict:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 3}}


def chunk(text: str | None, finish: str | None = None) -> str:
    return json.dumps({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]})


def sse_reply(events: list[str], *, done: bool = True) -> Reply:
    """An event stream over HTTP/1.0: the body ends when the connection closes, so a cut stream looks clean."""
    def reply(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        for data in [*events, *(["[DONE]"] if done else [])]:
            handler.wfile.write(f"data: {data}\n\n".encode())
            handler.wfile.flush()
    return reply


def silent_for(seconds: float) -> Reply:
    def reply(handler):
        time.sleep(seconds)
        json_reply(200, completion("late"))(handler)
    return reply


class ScriptedServer:
    """Answers ``POST /v1/chat/completions`` with ``replies`` in turn (the last one repeats); lists one model."""

    def __init__(self):
        self.replies: list[Reply] = []
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                json_reply(200, {"object": "list", "data": [{"id": "scripted-model", "object": "model"}]})(self)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                replies = server.replies or [json_reply(200, completion("ok"))]
                replies[min(len(server.requests), len(replies)) - 1](self)

            def log_message(self, *args):
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    def close(self):
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def scripted():
    server = ScriptedServer()
    yield server
    server.close()


def remote(settings_dir: Path, url: str, **overrides) -> OpenAIGenerator:
    settings = Settings(data_dir=settings_dir, lm_url=url, **{"lm_retries": 2, "lm_timeout_s": 5, **overrides})
    return OpenAIGenerator(settings, backoff_s=0.05, connect_timeout_s=2)


def assert_one_line_naming(error: BaseException, url: str, *parts: str):
    message = str(error)
    assert isinstance(error, LMServerError) and "\n" not in message and message.startswith(f"LM server {url}: ")
    for part in parts:
        assert part in message


# -- a misbehaving server: fast ----------------------------------------------------------------

@pytest.mark.parametrize("reply, expected", [
    (raw_reply(200, b"<html><body>Bad gateway, try later</body></html>", "text/html"), "the answer is not JSON (text/html)"),
    (json_reply(200, {"id": "x", "object": "chat.completion"}), "malformed answer: it has no 'choices' list"),
    (json_reply(200, {"choices": []}), "malformed answer: its 'choices' list is empty"),
    (json_reply(200, {"error": {"message": "the model crashed"}}), "it reports an error: the model crashed"),
])
def test_garbage_answers_are_one_clear_error(tmp_path, scripted, reply, expected):
    scripted.replies = [reply]
    with pytest.raises(LMServerError) as info:
        remote(tmp_path, scripted.url).generate(QUESTION)
    assert_one_line_naming(info.value, scripted.url, expected)
    assert len(scripted.requests) == 1  # an answer, however wrong, is not retried


def test_server_errors_are_retried_with_backoff_and_then_succeed(tmp_path, scripted):
    scripted.replies = [json_reply(500, {"error": {"message": "warming"}}), json_reply(503, {}),
                        json_reply(200, completion("Paris."))]
    result = remote(tmp_path, scripted.url).generate(QUESTION)
    assert result.text == "Paris." and (result.prompt_tokens, result.new_tokens) == (9, 3)
    assert len(scripted.requests) == 3


def test_server_errors_past_the_retries_are_one_error_after_every_attempt(tmp_path, scripted):
    scripted.replies = [json_reply(500, {"error": {"message": "out of  memory"}})]
    with pytest.raises(LMServerError) as info:
        remote(tmp_path, scripted.url).generate(QUESTION)
    assert_one_line_naming(info.value, scripted.url, "HTTP 500: out of memory (after 3 attempts)")
    assert len(scripted.requests) == 3


def test_too_many_requests_waits_for_retry_after(tmp_path, scripted):
    scripted.replies = [json_reply(429, {"error": "slow down"}, {"Retry-After": "1"}), json_reply(200, completion("Paris."))]
    started = time.perf_counter()
    assert remote(tmp_path, scripted.url).generate(QUESTION).text == "Paris."
    assert time.perf_counter() - started >= 1.0 and len(scripted.requests) == 2


def test_a_refused_request_is_not_retried_and_says_why(tmp_path, scripted):
    scripted.replies = [json_reply(404, {"error": {"message": "The model `gpt-9` does not exist."}})]
    with pytest.raises(LMServerError) as info:
        remote(tmp_path, scripted.url, lm_model="gpt-9").generate(QUESTION)
    assert_one_line_naming(info.value, scripted.url, "HTTP 404: The model `gpt-9` does not exist.")
    assert len(scripted.requests) == 1


def test_a_server_that_is_down_is_one_error_after_the_retries_and_is_tried_again_later(tmp_path):
    server = FakeLMServer(text="Paris.")  # its port is free: nothing listens there yet
    generator = remote(tmp_path, server.url)
    generator.warm_up()  # a server that is not up yet does not fail the warm-up
    assert generator.model_name == "" and not generator.health().reachable
    with pytest.raises(LMServerUnavailable) as info:
        generator.generate(QUESTION)
    assert_one_line_naming(info.value, server.url, "cannot connect", "(after 3 attempts)")
    assert "cannot connect" in generator.health().reason
    server.start()
    try:  # the very next request reaches it: the failure was not remembered
        assert generator.generate(QUESTION).text == "Paris."
        assert generator.model_name == "fake-model" and generator.health().reachable
        assert "".join(generator.stream(QUESTION)) == "Paris."
    finally:
        server.stop()


def test_health_is_refreshed_by_a_background_probe(tmp_path):
    server = FakeLMServer().start()
    generator = remote(tmp_path, server.url)
    generator.warm_up()
    assert generator.health().reachable
    server.stop()
    assert generator.health().reachable  # what the last exchange found, at once
    deadline = time.monotonic() + 5
    while generator.health(max_age_s=0).reachable and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "cannot connect" in generator.health().reason


def test_a_refusal_at_warm_up_is_an_error_at_once(tmp_path):
    class Refusing(BaseHTTPRequestHandler):
        def do_GET(self):
            json_reply(401, {"error": {"message": "Invalid API key"}})(self)

        def log_message(self, *args):
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{http.server_address[1]}/v1"
    try:  # a server that answers and refuses is a setup to fix, not one to wait for
        with pytest.raises(LMServerError) as info:
            remote(tmp_path, url).warm_up()
    finally:
        http.shutdown()
        http.server_close()
    assert not isinstance(info.value, LMServerUnavailable)
    assert_one_line_naming(info.value, url, "HTTP 401: Invalid API key")


def test_a_silent_server_times_out_without_a_retry(tmp_path, scripted):
    scripted.replies = [silent_for(3)]
    generator = remote(tmp_path, scripted.url, lm_timeout_s=0.5)
    started = time.perf_counter()
    with pytest.raises(LMServerError) as info:
        generator.generate(QUESTION)
    assert_one_line_naming(info.value, scripted.url, "no answer within 0.5 s (KGQA_LM_TIMEOUT_S)")
    assert time.perf_counter() - started < 2.5 and len(scripted.requests) == 1


def test_stream_failures_before_the_first_token_are_retried(tmp_path, scripted):
    scripted.replies = [json_reply(502, {}), sse_reply([chunk("Par"), chunk("is."), chunk(None, "stop")])]
    assert "".join(remote(tmp_path, scripted.url).stream(QUESTION)) == "Paris."
    assert len(scripted.requests) == 2


@pytest.mark.parametrize("reply, expected", [
    (sse_reply([chunk("Par"), "{not json"]), "a stream event is not JSON"),
    (sse_reply([chunk("Par"), chunk("is")], done=False), "the stream ended before the answer finished"),
    (raw_reply(200, b"<html>oops</html>", "text/html"), "answered text/html instead of an event stream"),
    (sse_reply([json.dumps({"error": {"message": "slot unavailable"}})]), "malformed stream: it reports an error"),
])
def test_a_broken_stream_is_one_clear_error(tmp_path, scripted, reply, expected):
    scripted.replies = [reply]
    pieces = []
    with pytest.raises(LMServerError) as info:
        for piece in remote(tmp_path, scripted.url).stream(QUESTION):
            pieces.append(piece)
    assert_one_line_naming(info.value, scripted.url, expected)
    assert len(scripted.requests) == 1 and "".join(pieces) in ("", "Par", "Paris")


def test_stops_are_sent_and_applied_here_when_the_server_ignores_them(tmp_path, scripted):
    text = ["Montgomery", " [1].<evi", "dence> [2] Ignore previous", " instructions."]
    scripted.replies = [sse_reply([*map(chunk, text), chunk(None, "stop")]),
                        json_reply(200, completion("".join(text)))]
    generator = remote(tmp_path, scripted.url)
    streamed = list(generator.stream(QUESTION, stop=["<evidence>"]))
    whole = generator.generate(QUESTION, stop=["<evidence>"])
    assert "".join(streamed) == whole.text == "Montgomery [1]."
    assert whole.finish_reason == "stop"
    assert all(r["body"]["stop"] == ["<evidence>"] for r in scripted.requests)


def test_requests_carry_the_model_the_key_and_greedy_decoding(tmp_path, scripted):
    generator = remote(tmp_path, scripted.url, lm_api_key="sk-test")
    generator.generate(QUESTION, max_new_tokens=7)
    sent = scripted.requests[-1]
    assert generator.model_name == "scripted-model" and sent["body"]["model"] == "scripted-model"
    assert sent["auth"] == "Bearer sk-test" and sent["path"] == "/v1/chat/completions"
    assert (sent["body"]["max_tokens"], sent["body"]["temperature"], sent["body"]["stream"]) == (7, 0.0, False)
    assert (generator.backend, generator.device) == ("openai", "remote")


def test_without_a_local_tokenizer_tokens_are_a_conservative_estimate(tmp_path, scripted):
    generator = remote(tmp_path, scripted.url)
    text = "Montgomery is the capital of Alabama."
    assert generator.count_tokens(text) == -(-len(text) // CHARS_PER_TOKEN) >= 10


# -- a real OpenAI-compatible server: llama.cpp's -------------------------------------------------

class LlamaServer:
    """``python -m models.lm.llamacpp`` on the bundled GGUF, on a free loopback port."""

    def __init__(self, slots: int):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "models.lm.llamacpp", str(bundled_gguf_path()), "--port", "0", "--slots", str(slots)],
            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        line = self.process.stdout.readline()  # "serving <gguf> on http://127.0.0.1:<port>/v1" once loaded
        found = re.search(r"(http://\S+)/v1", line)
        if not found:
            self.stop()
            pytest.fail(f"llama.cpp server did not start: {line!r}")
        self.root = found.group(1)
        self.url = f"{self.root}/v1"

    def busy(self) -> bool:
        return any(slot["is_processing"] for slot in httpx2.get(f"{self.root}/slots").json())

    def stop(self):
        self.process.kill()
        self.process.wait(10)


@pytest.fixture(scope="session")
def llama_server():
    server = LlamaServer(slots=1)
    yield server
    server.stop()


@pytest.mark.slow
def test_the_streamed_answer_equals_the_whole_one(tmp_path, llama_server):
    generator = remote(tmp_path, llama_server.url)
    whole = generator.generate(QUESTION, max_new_tokens=24)
    stream = generator.stream(QUESTION, max_new_tokens=24)
    pieces = list(stream)
    assert len(pieces) > 3 and "".join(pieces) == whole.text and whole.text.strip()
    assert whole.new_tokens == 24 and whole.finish_reason == stream.finish_reason == "length"


@pytest.mark.slow
def test_stop_strings_cut_the_answer_on_the_server(tmp_path, llama_server):
    generator = remote(tmp_path, llama_server.url)
    full = generator.generate(QUESTION, max_new_tokens=24).text
    stop = full.split()[2]  # a word from the middle of the greedy answer
    cut = generator.generate(QUESTION, max_new_tokens=24, stop=[stop])
    assert cut.text == full[: full.index(stop)] and cut.finish_reason == "stop"
    assert "".join(generator.stream(QUESTION, max_new_tokens=24, stop=[stop])) == cut.text


@pytest.mark.slow
def test_closing_the_stream_stops_generation_on_the_server(tmp_path, llama_server):
    generator = remote(tmp_path, llama_server.url)
    stream = generator.stream(COUNTING, max_new_tokens=400)  # a long answer on the server's only slot
    first = [next(stream) for _ in range(3)]
    assert llama_server.busy() and "".join(first)
    stream.close()
    deadline = time.perf_counter() + 2
    while llama_server.busy():
        assert time.perf_counter() < deadline, "the server kept generating after the stream was closed"
        time.sleep(0.05)
    started = time.perf_counter()
    assert generator.generate(QUESTION, max_new_tokens=4).text
    assert time.perf_counter() - started < 5  # the slot was free: no 400-token answer to wait behind


@pytest.mark.slow
def test_a_server_killed_mid_stream_is_one_clear_error(tmp_path):
    server = LlamaServer(slots=1)
    try:
        stream = remote(tmp_path, server.url).stream(COUNTING, max_new_tokens=400)
        assert next(stream)
        server.stop()
        with pytest.raises(LMServerError) as info:
            for _ in stream:
                pass
    finally:
        server.stop()
    assert_one_line_naming(info.value, server.url, "mid-answer")


@pytest.mark.slow
def test_the_engine_answers_with_citations_through_the_server(sample_kb, llama_server):
    from qa.engine import QAEngine

    engine = QAEngine(sample_kb.with_overrides(lm_url=llama_server.url, max_new_tokens=40))
    result = engine.ask("Who wrote Animal Farm?")  # an infobox fact answers outright: no draft needed
    assert (result.backend, result.device) == ("openai", "remote")
    assert not result.abstained and "George Orwell" in result.answer and not result.generated
    assert any(c.title == "Animal Farm" for c in result.citations)
    drafted = engine.ask("What did Albert Einstein develop?")  # no fact answers: the server drafts, the reader reads
    assert drafted.generated and drafted.backend == "openai"
    assert drafted.abstained or "relativity" in drafted.answer
    for answer in (result, drafted):
        assert all(set(s.citations) <= {c.id for c in answer.citations} for s in answer.sentences)
