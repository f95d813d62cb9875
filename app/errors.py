"""One error shape for every failure: ``{"error": {"code", "message", "type"}}`` with the right status.

``code`` is kgqa's own; ``type`` is OpenAI's error type for the status (``error_type``), so an
OpenAI client reads it as ``e.type``.

HTTP errors (including the 500 Flask raises for an unhandled exception, which
it logs with its traceback first) go through one handler; the expected kgqa
failures map to statuses here. Browsers asking for a page get the same message
as a small HTML page, never a traceback.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, current_app, jsonify, render_template, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from app.runtime import NotReady
from kg.index_files import DamagedIndexFile
from kgqa.errors import Cancelled, InvalidQuestion, KnowledgeBaseMissing, LMServerError, Overloaded

bp = Blueprint("errors", __name__)

# Werkzeug's names where the snake-cased name would read oddly.
_CODES = {413: "payload_too_large", 500: "internal_error"}


def error_type(status: int) -> str:
    """OpenAI's error ``type`` for an HTTP status: ``rate_limit_error`` (429), ``server_error`` (5xx),
    else ``invalid_request_error``."""
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def error_response(status: int, code: str, message: str, *, headers: dict | None = None, **extra) -> Response:
    """The JSON error body, or an HTML page for a browser on a web page."""
    if _wants_html():
        response = Response(
            render_template("error.html", status=status, code=code, message=message), status=status
        )
    else:
        response = jsonify({"error": {"code": code, "message": message, "type": error_type(status), **extra}})
        response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _wants_html() -> bool:
    if request.blueprint == "web":
        return True
    if request.blueprint is not None or request.path.startswith(("/api/", "/v1/")):
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html" and request.accept_mimetypes[best] > request.accept_mimetypes["application/json"]


OPENAI_BLUEPRINTS = ("openai", "responses")  # /v1: OpenAI's conventions for errors


def _client_error_status() -> int:
    """OpenAI answers bad requests with 400; the kgqa API uses 422 for a well-formed but invalid body."""
    return 400 if request.blueprint in OPENAI_BLUEPRINTS else 422


def status_code_name(status: int, reason: str) -> str:
    """The error ``code`` of an HTTP status: its reason snake-cased (``request_header_fields_too_large``)."""
    return _CODES.get(status) or re.sub(r"\W+", "_", (reason or "error").lower()).strip("_")


@bp.app_errorhandler(HTTPException)
def handle_http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = getattr(exc, "error_code", None) or status_code_name(status, exc.name)
    message = "internal server error" if status >= 500 else (exc.description or exc.name)
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    extra = {"param": exc.param} if getattr(exc, "param", None) else {}  # the request parameter at fault
    return error_response(status, code, message, headers=headers, **extra)


@bp.app_errorhandler(ValidationError)
def handle_validation_error(exc: ValidationError) -> Response:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    message = f"{where}: {first['msg']}"
    if first["type"] == "extra_forbidden" and request.blueprint in OPENAI_BLUEPRINTS:
        message = f"Unrecognized request argument supplied: {where}"
    return error_response(_client_error_status(), "invalid_request", message, param=where)


@bp.app_errorhandler(InvalidQuestion)
def handle_invalid_question(exc: InvalidQuestion) -> Response:
    return error_response(_client_error_status(), "invalid_question", str(exc))


@bp.app_errorhandler(KnowledgeBaseMissing)
def handle_kb_missing(exc: KnowledgeBaseMissing) -> Response:
    return error_response(503, "knowledge_base_missing", str(exc))


@bp.app_errorhandler(DamagedIndexFile)
def handle_damaged_index(exc: DamagedIndexFile) -> Response:
    """An index file failed its check at load: 503 naming it by its place in the data folder, never its path."""
    return error_response(503, "index_damaged", str(exc))


@bp.app_errorhandler(Overloaded)
def handle_overloaded(exc: Overloaded) -> Response:
    return error_response(503, "overloaded", str(exc), headers={"Retry-After": str(exc.retry_after)})


@bp.app_errorhandler(LMServerError)
def handle_lm_server_error(exc: LMServerError) -> Response:
    """The LM server (``KGQA_LM_URL``) failed: 502, saying why but not where (the log says where)."""
    log_lm_server_error(exc)
    return error_response(502, "lm_server_error", f"the language model server failed: {exc.reason}")


def log_lm_server_error(exc: LMServerError) -> None:
    current_app.logger.error("%s", exc)


@bp.app_errorhandler(Cancelled)
def handle_cancelled(exc: Cancelled) -> Response:
    """The client went away mid-answer and the answer was given up: nobody reads this (nginx's 499)."""
    current_app.logger.info("answer given up: %s", exc)
    return error_response(499, "client_closed_request", str(exc))


@bp.app_errorhandler(NotReady)
def handle_not_ready(exc: NotReady) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
    return error_response(503, exc.code, str(exc), headers=headers)


def stream_error_payload(exc: Exception) -> dict:
    """The error shape for a failure after a stream has started (its status is already sent)."""
    if isinstance(exc, Overloaded):
        code = "overloaded"
    elif isinstance(exc, KnowledgeBaseMissing):
        code = "knowledge_base_missing"
    elif isinstance(exc, DamagedIndexFile):
        code = "index_damaged"
    elif isinstance(exc, InvalidQuestion):
        code = "invalid_question"
    elif isinstance(exc, LMServerError):
        log_lm_server_error(exc)
        return {"error": {"code": "lm_server_error", "message": f"the language model server failed: {exc.reason}",
                          "type": "server_error"}}
    else:
        return {"error": {"code": "internal_error", "message": "internal server error", "type": "server_error"}}
    return {"error": {"code": code, "message": str(exc),
                      "type": "invalid_request_error" if code == "invalid_question" else "server_error"}}
