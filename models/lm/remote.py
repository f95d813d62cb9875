"""``OpenAIGenerator``: generation on any server that speaks the OpenAI chat-completions protocol.

``KGQA_LM_URL=http://host:port/v1`` sends every answer to ``POST {url}/chat/completions``
(vLLM, TGI, llama.cpp's server, Ollama, OpenAI itself), with ``KGQA_LM_MODEL`` as the
model (else the first one ``GET {url}/models`` lists) and ``KGQA_LM_API_KEY`` as a bearer
token. Retrieval, grounding and citations stay in kgqa: the server only writes text.

The client is ``httpx2`` (the HTTP client ``openai`` and ``huggingface_hub`` already
bring): its ``EventSource`` parses the server-sent events, and each attempt's timeouts,
retries and the closing of a stream stay in view here rather than inside an SDK.

- Timeouts: ``CONNECT_TIMEOUT_S`` to connect; ``KGQA_LM_TIMEOUT_S`` for any read (the
  whole answer without streaming, the gap between two chunks with it).
- Retries: connection failures and HTTP 429/5xx are retried ``KGQA_LM_RETRIES`` times with
  exponential backoff (``Retry-After`` honoured up to ``MAX_BACKOFF_S``), but only before
  the first token: once text has reached the caller a failure ends the answer.
- Stop strings are sent as ``stop`` and also cut here, since some servers ignore them;
  text that could begin a stop string is held back, so no caller ever sees one.
- Closing a stream (the engine does when it has enough sentences, the service when the
  client goes away) closes its HTTP response, which tells the server to stop generating.
- A server that is down, refuses the request (HTTP 4xx) or answers something that is not
  the protocol (not JSON, no ``choices``) is one ``LMServerError`` line naming the server;
  down, timed out or 429/5xx on every attempt is its ``LMServerUnavailable`` kind.
- A server that is down is never remembered as down: ``warm_up()`` creates the client and
  asks the server once, but a server that is unavailable then (not up yet, still loading)
  does not fail the warm-up, and every request tries it afresh. ``health()`` says what the
  last exchange with the server found, asking it again in the background (one
  ``GET /models``, ``PROBE_TIMEOUT_S``) when that is older than ``PROBE_INTERVAL_S``;
  the service's ``/readyz`` reports it.

``count_tokens``: the server's tokenizer is unknown here. With ``KGQA_LM_PATH`` set, that
model's tokenizer counts (point it at the served model's folder for exact counts); else
``ceil(len(text) / CHARS_PER_TOKEN)``, a conservative estimate (English runs near 4
characters per token on the common BPE vocabularies), so evidence never overruns its budget.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx2

from kgqa.cancel import Cancelled, check_current
from kgqa.usage import record
from kgqa.errors import LMServerError, LMServerUnavailable
from kgqa.settings import Settings
from models.lm.chat_protocol import Answer, MalformedAnswer, StopText, chat_request, read_chunk, read_completion
from models.lm.generator import Generation, GenerationConfig, Messages

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
BACKOFF_S = 0.5  # first retry after 0.5 s, then 1 s, 2 s, ...
MAX_BACKOFF_S = 8.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CHARS_PER_TOKEN = 3.5
PROBE_TIMEOUT_S = 1.0  # health(): one GET /models, connect and read, no retry
PROBE_INTERVAL_S = 5.0  # health(): ask the server again once what is known is this old


@dataclass(frozen=True)
class ServerHealth:
    """What the last exchange with the LM server found: ``reason`` (without its address) says why it failed."""

    reachable: bool
    reason: str = ""
    checked_at: float = 0.0  # time.monotonic() of that exchange; 0: never asked


class OpenAIGenerator:
    """The ``Generator`` over an OpenAI-compatible chat-completions server; thread-safe, lazy."""

    backend = "openai"
    attention = "server"  # the attention kernel is the server's own affair
    device = "remote"

    def __init__(self, settings: Settings, *, connect_timeout_s: float = CONNECT_TIMEOUT_S, backoff_s: float = BACKOFF_S):
        if not settings.lm_url:
            raise ValueError("OpenAIGenerator needs KGQA_LM_URL")
        self.settings = settings
        self.base_url = settings.lm_url.rstrip("/")
        self.read_timeout_s = settings.lm_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.retries = settings.lm_retries
        self.backoff_s = backoff_s
        self._model = settings.lm_model
        self._client: httpx2.Client | None = None
        self._tokenizer = None
        self._lock = threading.Lock()
        self._health = ServerHealth(reachable=False, reason="not asked yet")
        self._probing = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Open the client and ask the server once (learning its model unless ``KGQA_LM_MODEL`` names one).

        A server that refuses or answers garbage raises; one that is unavailable (down, not up
        yet, still loading) is logged and tried again by every request.
        """
        if self._client is not None:
            return
        with self._lock:
            if self._client is not None:
                return
            headers = {"Authorization": f"Bearer {self.settings.lm_api_key}"} if self.settings.lm_api_key else {}
            client = httpx2.Client(
                timeout=httpx2.Timeout(self.read_timeout_s, connect=self.connect_timeout_s), headers=headers
            )
            try:
                self._learn_model(client)
            except LMServerUnavailable as exc:
                log.warning("LM server %s is unavailable (%s); starting without it, every request tries it again",
                            self.base_url, exc.reason)
            except BaseException:
                client.close()
                raise
            else:
                log.info("generation runs on %s (model %s)", self.base_url, self._model)
            self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    @property
    def model_name(self) -> str:
        """``KGQA_LM_MODEL``, else the served model once the server has been reached ("" until then)."""
        self.warm_up()
        return self._model

    def _request_model(self) -> str:
        """The model a request names: learnt from the server now if it was unavailable until now."""
        self.warm_up()
        if not self._model:
            self._learn_model(self._client)
        return self._model

    def _learn_model(self, client: httpx2.Client) -> None:
        if not self._model:
            self._model = self._served_model(client)
        else:
            self._send(client, "GET", "/models", allow={404})  # reachable; not every server lists models

    def health(self, max_age_s: float = PROBE_INTERVAL_S) -> ServerHealth:
        """What the last exchange with the server found; older than ``max_age_s``, a background probe asks again."""
        health = self._health
        if self._client is not None and time.monotonic() - health.checked_at >= max_age_s and self._probing.acquire(blocking=False):
            threading.Thread(target=self._probe, name="kgqa-lm-probe", daemon=True).start()
        return health

    def _probe(self) -> None:
        """One ``GET /models`` within ``PROBE_TIMEOUT_S``, no retry: any answer but 429/5xx means reachable."""
        try:
            response = self._client.get(self.base_url + "/models", timeout=PROBE_TIMEOUT_S)
            response.close()
            if response.status_code in RETRY_STATUSES:
                self._note(f"HTTP {response.status_code}")
            else:
                self._note(None)
        except httpx2.TimeoutException:
            self._note(f"no answer within {PROBE_TIMEOUT_S:g} s")
        except httpx2.HTTPError as exc:
            self._note(_describe(exc, PROBE_TIMEOUT_S))
        finally:
            self._probing.release()

    def _note(self, failure: str | None) -> None:
        """Record the outcome of an exchange: ``None`` when the server answered, else why it is unavailable."""
        self._health = ServerHealth(reachable=failure is None, reason=failure or "", checked_at=time.monotonic())

    def _served_model(self, client: httpx2.Client) -> str:
        payload = _json(self._send(client, "GET", "/models"), self._fail)
        models = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(models, list) or not models or not isinstance(models[0], dict) or not models[0].get("id"):
            raise self._fail("GET /models lists no model; set KGQA_LM_MODEL")
        return str(models[0]["id"])

    # -- tokens ----------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Exact with ``KGQA_LM_PATH``'s tokenizer, else a conservative estimate (see the module doc)."""
        if self.settings.lm_path:
            if self._tokenizer is None:
                with self._lock:
                    if self._tokenizer is None:
                        from kgqa.assets import resolve_lm
                        from models.lm.loader import load_tokenizer

                        self._tokenizer = load_tokenizer(resolve_lm(self.settings))
            return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    # -- generation ------------------------------------------------------------------------
    def generate(self, messages: Messages, **knobs) -> Generation:
        """One non-streamed request; ``first_token_s`` is unknown without streaming and reads ``total_s``."""
        config = self._config(knobs)
        body = chat_request(messages, config, model=self._request_model(), stream=False)
        started = time.perf_counter()
        answer = self._read_answer(self._send(self._client, "POST", "/chat/completions", json_body=body))
        cut = StopText(config.stop)
        text = cut.feed(answer.text) + cut.flush()
        total = time.perf_counter() - started
        generation = Generation(
            text=text,
            prompt_tokens=answer.prompt_tokens if answer.prompt_tokens is not None else self._prompt_tokens(messages),
            new_tokens=answer.new_tokens if answer.new_tokens is not None else self.count_tokens(text),
            first_token_s=total,
            total_s=total,
            finish_reason=_finish_reason("stop" if cut.stopped else answer.finish_reason),
        )
        record(generation.prompt_tokens, generation.new_tokens)  # kgqa.usage
        return generation

    def stream(self, messages: Messages, **knobs) -> RemoteStream:
        """Text pieces as the server writes them; the request is sent (and a down server raises) before this returns."""
        config = self._config(knobs)
        body = chat_request(messages, config, model=self._request_model(), stream=True)
        body["stream_options"] = {"include_usage": True}  # the token counts, on a last chunk (kgqa.usage)
        scope = check_current()
        stream = RemoteStream(self, body, config.stop)
        if scope is not None:
            scope.on_cancel(stream.abandon)
        return stream

    def _config(self, knobs: dict) -> GenerationConfig:
        return GenerationConfig.build(**{"max_new_tokens": self.settings.max_new_tokens, **knobs})

    def _prompt_tokens(self, messages: Messages) -> int:
        return sum(self.count_tokens(turn["content"]) for turn in messages)

    # -- HTTP ------------------------------------------------------------------------------
    def _fail(self, what: str) -> LMServerError:
        return LMServerError(self.base_url, what)

    def _unavailable(self, what: str) -> LMServerUnavailable:
        self._note(what)
        return LMServerUnavailable(self.base_url, what)

    def _send(self, client: httpx2.Client, method: str, path: str, *, json_body: dict | None = None,
              stream: bool = False, allow: frozenset[int] | set[int] = frozenset()) -> httpx2.Response:
        """One request, retried on connection failures and 429/5xx; a response with any other status is an error."""
        attempts = self.retries + 1
        for attempt in range(attempts):
            retry_after = 0.0
            try:
                response = client.send(client.build_request(method, self.base_url + path, json=json_body), stream=stream)
            except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.RemoteProtocolError, httpx2.ReadError) as exc:
                failure = _describe(exc, self.connect_timeout_s)
            except httpx2.TimeoutException:
                raise self._unavailable(f"no answer within {self.read_timeout_s:g} s (KGQA_LM_TIMEOUT_S)") from None
            except httpx2.HTTPError as exc:
                raise self._fail(_describe(exc, self.connect_timeout_s)) from None
            else:
                if response.status_code not in RETRY_STATUSES:
                    self._note(None)  # it answered: reachable, whatever it said
                if response.status_code < 400 or response.status_code in allow:
                    return response
                failure = f"HTTP {response.status_code}: {_error_message(response)}"
                if response.status_code not in RETRY_STATUSES:
                    raise self._fail(failure)
                retry_after = _retry_after(response)
            if attempt + 1 < attempts:
                delay = min(max(self.backoff_s * 2**attempt, retry_after), MAX_BACKOFF_S)
                log.warning("LM server %s: %s; retrying in %.1f s", self.base_url, failure, delay)
                time.sleep(delay)
        raise self._unavailable(f"{failure} (after {attempts} attempts)")

    def _read_answer(self, response: httpx2.Response) -> Answer:
        try:
            return read_completion(_json(response, self._fail))
        except MalformedAnswer as exc:
            raise self._fail(f"malformed answer: {exc}") from None


class RemoteStream(Iterator[str]):
    """One streamed answer: its HTTP response, opened at construction, and the text pieces read from it.

    ``close()`` (or leaving a ``with`` block, or stopping iteration) closes the response, so
    the server stops generating. ``finish_reason``, ``prompt_tokens`` and ``new_tokens``
    are known once the stream has ended (the token counts only when the server sends usage).
    """

    def __init__(self, generator: OpenAIGenerator, body: dict, stop: tuple[str, ...]):
        self._generator = generator
        self._body = body
        self._stop = stop
        self.finish_reason: str | None = None
        self.prompt_tokens: int | None = None
        self.new_tokens: int | None = None
        self._abandoned = False
        self._response = self._open()
        self._pieces = self._read()

    def _open(self) -> httpx2.Response:
        gen = self._generator
        return gen._send(gen._client, "POST", "/chat/completions", json_body=self._body, stream=True)

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        self._response.close()
        self._pieces.close()

    def abandon(self) -> None:
        """Give the answer up from any thread (a cancel scope's callback): reading stops at the next chunk."""
        self._abandoned = True

    def __enter__(self) -> RemoteStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read(self) -> Iterator[str]:
        """Pieces, cut at stop strings; a failure before any text arrived reopens the request (bounded)."""
        fail, unavailable = self._generator._fail, self._generator._unavailable
        reopened = 0
        try:
            while True:
                cut = StopText(self._stop)
                try:
                    for answer in self._answers():
                        if self._abandoned:
                            raise Cancelled("the request was cancelled: its client went away")
                        self._note(answer)
                        piece = cut.feed(answer.text)
                        if piece:
                            yield piece
                        if cut.stopped:
                            self.finish_reason = "stop"
                            return
                    break
                except (httpx2.RemoteProtocolError, httpx2.ReadError) as exc:
                    if cut.text or reopened >= self._generator.retries:
                        raise unavailable(f"the connection broke mid-answer ({_describe(exc, 0)})") from None
                    reopened += 1
                    self._response.close()
                    time.sleep(min(self._generator.backoff_s * 2 ** (reopened - 1), MAX_BACKOFF_S))
                    self._response = self._open()
                except httpx2.TimeoutException:
                    raise unavailable(f"no answer within {self._generator.read_timeout_s:g} s (KGQA_LM_TIMEOUT_S)") from None
                except MalformedAnswer as exc:
                    raise fail(f"malformed stream: {exc}") from None
            tail = cut.flush()
            if tail:
                yield tail
            self.finish_reason = _finish_reason(self.finish_reason)
        finally:
            self._response.close()
            record(self.prompt_tokens or 0, self.new_tokens or 0)  # kgqa.usage: what the server reported

    def _answers(self) -> Iterator[Answer]:
        """The chunks of the current response; a server that ignored ``stream`` and sent one JSON answer works too."""
        response, fail = self._response, self._generator._fail
        kind = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind == "application/json":
            response.read()
            yield read_completion(_json(response, fail))
            return
        if kind != "text/event-stream":
            raise fail(f"answered {kind or 'no content type'} instead of an event stream: {_snippet(response)}")
        finished = False
        for event in httpx2.EventSource(response):
            if event.data.strip() == "[DONE]":
                return
            try:
                payload = json.loads(event.data)
            except ValueError:
                raise fail(f"a stream event is not JSON: {event.data[:120]!r}") from None
            answer = read_chunk(payload)
            finished = finished or answer.finish_reason is not None
            yield answer
        if not finished:
            raise fail("the stream ended before the answer finished (no finish_reason, no [DONE])")

    def _note(self, answer: Answer) -> None:
        self.finish_reason = answer.finish_reason or self.finish_reason
        self.prompt_tokens = answer.prompt_tokens if answer.prompt_tokens is not None else self.prompt_tokens
        self.new_tokens = answer.new_tokens if answer.new_tokens is not None else self.new_tokens


def _finish_reason(reason: str | None) -> str:
    """The engine's two reasons: ``length`` when the token limit ended the answer, else ``stop``."""
    return "length" if reason == "length" else "stop"


def _json(response: httpx2.Response, fail) -> object:
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "").partition(";")[0] or "no content type"
        raise fail(f"the answer is not JSON ({kind}): {_snippet(response)}") from None


def _snippet(response: httpx2.Response, limit: int = 120) -> str:
    try:
        text = response.read().decode("utf-8", "replace")
    except httpx2.HTTPError:
        return "(unreadable body)"
    return repr(" ".join(text.split())[:limit])


def _error_message(response: httpx2.Response) -> str:
    """The message of an error response: its OpenAI-style ``error.message``, else the start of its body."""
    try:
        response.read()
        payload = response.json()
    except (ValueError, httpx2.HTTPError):
        return _snippet(response)
    finally:
        response.close()
    for candidate in (payload.get("error"), payload.get("message"), payload.get("detail")) if isinstance(payload, dict) else ():
        if isinstance(candidate, dict):
            candidate = candidate.get("message")
        if isinstance(candidate, str) and candidate.strip():
            return " ".join(candidate.split())[:300]
    return _snippet(response)


def _retry_after(response: httpx2.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", "0")))
    except ValueError:
        return 0.0


def _describe(exc: httpx2.HTTPError, connect_timeout_s: float) -> str:
    if isinstance(exc, httpx2.ConnectTimeout):
        return f"cannot connect within {connect_timeout_s:g} s"
    if isinstance(exc, httpx2.ConnectError):
        return f"cannot connect ({_reason(exc)})"
    return _reason(exc) or type(exc).__name__


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    # "[Errno 111] Connection refused" reads better without the errno.
    return text.split("] ", 1)[1] if text.startswith("[Errno") and "] " in text else text
