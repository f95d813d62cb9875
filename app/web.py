"""The web pages: the Q&A page, an entity page and a passage page (server-rendered, autoescaped).

The Q&A page's behaviour lives in ``static/app.js``; no page carries inline
script, and every response gets a strict Content-Security-Policy.
"""

from __future__ import annotations

from flask import Blueprint, Response, render_template

from app.kb import find_entity, find_passage

bp = Blueprint("web", __name__)  # templates/ and static/ are the app's own folders

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def security_headers(response: Response) -> Response:
    """Set on every response, API included: nothing the service sends may run foreign script."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@bp.get("/")
def index() -> str:
    """The Q&A page: a question box, the streamed answer, its sources and facts."""
    return render_template("index.html")


@bp.get("/entity/<path:name>")
def entity_page(name: str) -> str:
    """An entity's facts with provenance, its aliases, categories and neighbours."""
    return render_template("entity.html", entity=find_entity(name))


@bp.get("/passage/<path:passage_id>")
def passage_page(passage_id: str) -> str:
    """One passage's text with a link to its Wikipedia article."""
    return render_template("passage.html", passage=find_passage(passage_id))
