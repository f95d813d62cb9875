"""The JSON API (``/api/v1``): ask (plain or streamed), entities, passages, health and the spec."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from app.errors import stream_error_payload
from app.kb import find_entity, find_passage
from app.limits import current_limits
from app.schemas import AskRequest, parse_body
from app.sse import BackgroundStream, sse_data, sse_response, with_keepalives
from kgqa.errors import KgqaError

bp = Blueprint("api", __name__)


def current_runtime():
    return current_app.extensions["kgqa_runtime"]


@bp.post("/api/v1/ask")
def ask() -> Response:
    """Answer a question with citations; ``stream: true`` sends token events, then the result."""
    body: AskRequest = parse_body(AskRequest)
    limits = current_limits()
    question = limits.check_question(body.question)
    limits.check_turns((f"history[{i}].content", turn.content) for i, turn in enumerate(body.history))
    history = [turn.model_dump() for turn in body.history] or None
    runtime = current_runtime()
    engine = runtime.engine()
    release = runtime.slots.acquire()
    if body.stream:
        return _stream_answer(engine, question, body.k, history, release)
    try:
        result = engine.ask(question, k=body.k, history=history)
    finally:
        release()
    return jsonify(result.model_dump(mode="json"))


def start_event_stream(engine, question: str, k: int | None, history, release):
    """Start the engine's stream in a worker and await its first event (so early errors get a status)."""
    try:
        stream = BackgroundStream(engine.ask_stream(question, k=k, history=history), on_done=release).start()
    except BaseException:
        release()
        raise
    first = stream.next()  # re-raises InvalidQuestion / Overloaded / ... before any byte is sent
    return stream, first


def _stream_answer(engine, question, k, history, release) -> Response:
    stream, first = start_event_stream(engine, question, k, history, release)
    interval = current_app.config["SSE_KEEPALIVE_S"]

    def events():
        try:
            for item in with_keepalives(stream, first, interval):
                yield item if isinstance(item, str) else sse_data(_event_payload(item))
        except Exception as exc:  # the status is already sent: report the failure as an event
            if not isinstance(exc, KgqaError):
                current_app.logger.exception("answer stream failed")
            yield sse_data({"type": "error", **stream_error_payload(exc)})
        finally:
            stream.cancel()

    return sse_response(events())


def _event_payload(event) -> dict:
    """A token event as ``{type, text}``; the result event carries the same JSON as the plain answer."""
    if event.type == "result":
        return {"type": "result", "result": event.result.model_dump(mode="json")}
    return {"type": event.type, "text": event.text}


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
    """200 once the engine is warm; 503 with the reason until then."""
    runtime = current_runtime()
    runtime.engine()  # raises NotReady / the warm-up's error -> 503
    return jsonify({"status": "ready", **runtime.describe()})


@bp.get("/openapi.json")
@bp.get("/api/v1/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 description of this server, generated from its models and routes."""
    from app.openapi import build_spec

    return jsonify(build_spec(current_app))
