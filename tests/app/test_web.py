"""The web pages without a model: page structure, CSP, escaping of knowledge-base text, KB views."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from tests.helpers.app_fakes import HOSTILE_TEXT, hostile_kb, make_app  # noqa: F401 (fixture)


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags_of(html: str) -> list[tuple[str, dict]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


@pytest.fixture(scope="module")
def kb_client(hostile_kb):
    settings, _, _ = hostile_kb
    return make_app(settings.data_dir, warm=False, lm_path=settings.lm_path).test_client()


def test_index_page_has_no_inline_script_and_a_strict_csp(tmp_path):
    client = make_app(tmp_path / "data").test_client()
    response = client.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    tags = tags_of(html)
    scripts = [attrs for tag, attrs in tags if tag == "script"]
    assert scripts == [{"src": "/static/app.js", "defer": None}]
    assert not re.search(r"<script[^>]*>[^<]+</script>", html)
    assert not any(name.startswith("on") for _, attrs in tags for name in attrs)
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "'unsafe-inline'" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    # accessible form: labelled input, a real button, a live region for the answer
    assert ("label", {"for": "question"}) in tags
    assert any(tag == "button" and attrs.get("type") == "submit" for tag, attrs in tags)
    assert any(attrs.get("id") == "answer" and attrs.get("aria-live") for _, attrs in tags)
    assert any(tag == "meta" and attrs.get("name") == "viewport" for tag, attrs in tags)


def test_static_assets_are_served(tmp_path):
    client = make_app(tmp_path / "data").test_client()
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "javascript" in script.mimetype
    assert "innerHTML" not in script.get_data(as_text=True)  # KB text is only ever set as textContent
    assert client.get("/static/app.css").status_code == 200


def test_api_responses_carry_security_headers_too(tmp_path):
    response = make_app(tmp_path / "data").test_client().get("/healthz")
    assert "Content-Security-Policy" in response.headers


def test_browsers_get_an_html_error_page_without_traceback(tmp_path):
    client = make_app(tmp_path / "data").test_client()
    response = client.get("/no/such/page", headers={"Accept": "text/html"})
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert b"Traceback" not in response.data
    assert client.get("/no/such/page").json["error"]["code"] == "not_found"


@pytest.mark.slow
def test_entity_api_gives_facts_with_provenance(kb_client):
    body = kb_client.get("/api/v1/entities/Alabama").json
    assert body["title"] == "Alabama"
    capital = [f for f in body["facts"] if f["predicate"] == "capital"]
    assert capital and "Montgomery" in capital[0]["object"]
    assert capital[0]["rev_id"] > 0 and capital[0]["field"]
    assert body["out_neighbours"] and body["aliases"] is not None


@pytest.mark.slow
def test_entity_api_resolves_redirects_and_aliases(kb_client):
    # redirect pages of the sample dump (e.g. "AcademyAwards" -> "Academy Awards")
    assert kb_client.get("/api/v1/entities/AcademyAwards").json["title"] == "Academy Awards"
    assert kb_client.get("/api/v1/entities/ANOVA").json["title"] == "Analysis of variance"
    assert kb_client.get("/entity/AndorrA").status_code == 200
    direct = kb_client.get("/api/v1/entities/Alabama").json
    for name in ("alabama", "ALABAMA"):
        assert kb_client.get(f"/api/v1/entities/{name}").json["entity_id"] == direct["entity_id"]
    for alias in direct["aliases"][:3]:
        assert kb_client.get(f"/api/v1/entities/{alias}").json["entity_id"] == direct["entity_id"]


@pytest.mark.slow
def test_unknown_entity_and_passage_are_404(kb_client):
    for path in ("/api/v1/entities/No Such Thing Here", "/api/v1/passages/0:0:0:0"):
        response = kb_client.get(path)
        assert response.status_code == 404 and response.json["error"]["code"] == "not_found"
    assert kb_client.get("/entity/No Such Thing Here").mimetype == "text/html"


@pytest.mark.slow
def test_passage_api_gives_text_article_section_and_url(kb_client, hostile_kb):
    _, passage_id, title = hostile_kb
    body = kb_client.get(f"/api/v1/passages/{passage_id}").json
    assert body["text"] == HOSTILE_TEXT  # data comes back verbatim as JSON, never rewritten
    assert body["title"] == title and body["url"].startswith("https://en.wikipedia.org/wiki/")


@pytest.mark.slow
def test_passage_page_escapes_hostile_text(kb_client, hostile_kb):
    _, passage_id, _ = hostile_kb
    html = kb_client.get(f"/passage/{passage_id}").get_data(as_text=True)
    assert "&lt;script&gt;window.__pwned" in html
    assert "<script>window" not in html and "<img src=x" not in html and "<b>Injected" not in html
    assert [attrs for tag, attrs in tags_of(html) if tag == "img"] == []


@pytest.mark.slow
def test_entity_page_shows_facts_neighbours_and_escapes(kb_client, hostile_kb):
    _, _, title = hostile_kb
    html = kb_client.get(f"/entity/{title}").get_data(as_text=True)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "revision" in html and "Links to" in html
    alabama = kb_client.get("/entity/Alabama").get_data(as_text=True)
    assert "capital" in alabama and "Montgomery" in alabama
