"""The JSON API (``/api/v1``): ask (plain or streamed), entities, passages, health and the spec."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from app.answer_stream import VerifiedAnswer, verified_events
from app.errors import stream_error_payload
from app.kb import find_entity, find_passage
from app.limits import current_limits, request_tokens
from app.schemas import AskRequest, ResultEvent, parse_body
from app.sse import (
    KEEPALIVE,
    BackgroundStream,
    cancelled_when_gone,
    client_gone,
    first_event,
    sse_data,
    sse_response,
)
from kgqa.errors import KgqaError

bp = Blueprint("api", __name__)


def current_runtime():
    return current_app.extensions["kgqa_runtime"]


def admit():
    """The warm engine and a place to run it (waiting in line if need be), or 503 at once; returns (engine, release).

    The line is shared fairly between clients, each known by its address (``REMOTE_ADDR``; behind a proxy
    ``kgqa serve --trusted-proxy`` makes it the proxy's ``X-Forwarded-For``); the request's cost is the tokens its
    checks counted (app.limits). A client that goes away while its request waits gives its place in line up."""
    runtime = current_runtime()
    engine = runtime.engine()
    return engine, runtime.admission.admit(request.remote_addr or "unknown", cost=request_tokens(),
                                           gone=client_gone(request.environ))


@bp.post("/api/v1/ask")
def ask() -> Response:
    """Answer a question with citations; ``stream: true`` sends each verified sentence at once, then the result."""
    body: AskRequest = parse_body(AskRequest)
    limits = current_limits()
    question = limits.check_question(body.question)
    limits.check_turns((f"history[{i}].content", turn.content) for i, turn in enumerate(body.history))
    history = [turn.model_dump() for turn in body.history] or None
    engine, release = admit()
    if body.stream:
        return _stream_answer(engine, question, body.k, history, release)
    try:
        with cancelled_when_gone(client_gone(request.environ)):  # a client that leaves stops the answer
            result = engine.ask(question, k=body.k, history=history)
    finally:
        release()
    return jsonify(result.model_dump(mode="json"))


def start_event_stream(engine, question: str, k: int | None, history, release, *, await_first: bool = True):
    """Start the engine's stream in a worker; with ``await_first``, await its first event (so early errors get a
    status). Without it the first event is ``None``: the response starts at once and later errors go in the stream."""
    try:
        stream = BackgroundStream(engine.ask_stream(question, k=k, history=history), on_done=release).start()
    except BaseException:
        release()
        raise
    # re-raises InvalidQuestion / Overloaded / ... before any byte; None if the client leaves meanwhile
    first = first_event(stream, client_gone(request.environ)) if await_first else None
    return stream, first


def _stream_answer(engine, question, k, history, release) -> Response:
    stream, first = start_event_stream(engine, question, k, history, release)
    interval = current_app.config["SSE_KEEPALIVE_S"]
    gone = client_gone(request.environ)  # a client that goes away cancels the answer at once

    def events():
        answer = VerifiedAnswer()
        yield KEEPALIVE  # the status and headers go out now: the first verified sentence may be seconds away
        try:
            for item in verified_events(stream, first, interval, gone):
                if item is KEEPALIVE:
                    yield item
                elif item.type == "sentence":
                    yield sse_data(answer.add(item)[0].model_dump(mode="json"))
                elif item.type == "result":
                    yield sse_data(ResultEvent(result=item.result).model_dump(mode="json", exclude={"error"}))
        except Exception as exc:  # the status is already sent: the result event carries the failure
            if not isinstance(exc, KgqaError):
                current_app.logger.exception("answer stream failed")
            yield sse_data({"type": "result", "result": None, **stream_error_payload(exc)})
        finally:
            stream.cancel()

    return sse_response(events(), on_close=stream.cancel)


@bp.get("/api/v1/entities/<path:name>")
def entity(name: str) -> Response:
    """An entity (by title, alias or redirect): facts with provenance, aliases, neighbours."""
    return jsonify(find_entity(name).model_dump(mode="json"))


@bp.get("/api/v1/passages/<path:passage_id>")
def passage(passage_id: str) -> Response:
    """A passage's text with its article, section and URL."""
    return jsonify(find_passage(passage_id).model_dump(mode="json"))


@bp.get("/healthz")
@bp.get("/api/v1/healthz")
def healthz() -> Response:
    """The process is up (says nothing about the model)."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@bp.get("/api/v1/readyz")
def readyz() -> Response:
    """200 once the engine is warm (``degraded`` while its LM server is unavailable); 503 with the reason until then."""
    runtime = current_runtime()
    runtime.engine()  # raises NotReady / the warm-up's error -> 503
    return jsonify(runtime.describe())


@bp.get("/openapi.json")
@bp.get("/api/v1/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 description of this server, generated from its models and routes."""
    from app.openapi import build_spec

    return jsonify(build_spec(current_app))
