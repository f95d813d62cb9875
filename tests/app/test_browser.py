"""The web page in Debian's chromium through Playwright: verified sentences streamed in, highlighted sources, no XSS.

Playwright's own browser download is unreachable; the project's setup installs
``chromium`` with apt and the test drives it through ``executable_path``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from tests.helpers.app_fakes import ANSWER, PASSAGE_TEXT, QUESTION, UNVERIFIED, FakeEngine, hostile_kb  # noqa: F401
from tests.helpers.app_live import live_server
from tests.helpers.tiny_kb import tiny_kb  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ANSWER_TIMEOUT_MS = 300_000


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run `make chromium` (apt-get install chromium)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    yield page
    context.close()


@pytest.fixture(scope="module")
def real_server(hostile_kb):
    settings, _, _ = hostile_kb
    with live_server(settings.with_overrides(rate_limit_per_minute=0)) as url:
        yield url


def _screenshot(page, name: str, tmp_path: Path) -> None:
    """Kept in the test's folder, or in ``KGQA_SCREENSHOT_DIR`` for a person to look at."""
    folder = Path(os.environ.get("KGQA_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def _assert_nothing_executed(page) -> None:
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.dialogs == []


@pytest.mark.slow
def test_asks_streams_a_cited_answer_and_opens_the_source(page, real_server, tmp_path):
    page.goto(real_server)
    page.fill("#question", "What is anarchism?")
    page.press("#question", "Enter")
    # a verified sentence, with its citation, shows up while the answer is still being written
    page.locator("#answer .sentence button.cite").first.wait_for(timeout=ANSWER_TIMEOUT_MS)
    page.locator("#sources li").first.wait_for(timeout=ANSWER_TIMEOUT_MS)  # then the whole result
    assert "anarchism" in page.inner_text("#answer").lower()
    assert page.locator("#sources li").count() >= 1
    citation = page.locator("#answer button.cite[data-kind=passage]").first
    citation.click()
    panel = page.locator("#source-panel")
    panel.wait_for(state="visible")
    assert page.inner_text("#source-provenance").startswith("Passage ")  # fetched from /api/v1/passages
    assert "anarch" in page.inner_text("#source-text").lower()
    assert page.inner_text("#source-title") == "Anarchism"
    cited = page.inner_text("#source-text mark.cited")  # the evidence sentence behind the marker
    assert cited and cited in page.inner_text("#source-text") and "anarch" in cited.lower()
    assert page.get_attribute("#source-link", "href").startswith("https://en.wikipedia.org/")
    _screenshot(page, "answer-desktop", tmp_path)
    page.keyboard.press("Escape")
    panel.wait_for(state="hidden")
    page.set_viewport_size({"width": 375, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scrolling
    _screenshot(page, "answer-phone", tmp_path)
    _assert_nothing_executed(page)


@pytest.mark.slow
def test_hostile_passage_text_never_executes(page, real_server, hostile_kb, tmp_path):
    _, passage_id, title = hostile_kb
    page.goto(f"{real_server}/?passage={passage_id}")  # opens in the page's source panel (JS, textContent)
    page.locator("#source-panel").wait_for(state="visible")
    text = page.inner_text("#source-text")
    assert "<script>window.__pwned" in text and "<img src=x onerror=" in text
    assert page.locator("#source-panel script, #source-panel img").count() == 0
    assert page.inner_text("#source-section") == "Section: <b>Injected</b>"
    _screenshot(page, "hostile-panel", tmp_path)
    for path in (f"/passage/{passage_id}", f"/entity/{title}"):  # the server-rendered pages
        page.goto(real_server + path)
        assert "<script>window.__pwned" in page.inner_text("main")
        assert page.locator("main script, main img").count() == 0
    _assert_nothing_executed(page)


@pytest.fixture(scope="module")
def fake_server(tmp_path_factory):
    from kgqa.settings import Settings

    settings = Settings(data_dir=tmp_path_factory.mktemp("no-kb") / "data", rate_limit_per_minute=0)
    with live_server(settings, engine=FakeEngine(abstain=True, delay_s=0.05), ready_timeout=10) as url:
        yield url


def test_abstention_is_plain_and_the_page_works_by_keyboard(page, fake_server, tmp_path):
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(fake_server)
    page.keyboard.press("Tab")  # skip link
    page.keyboard.press("Tab")  # brand link
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "question"
    page.keyboard.type("Who won the 1950 chess olympiad?")
    page.keyboard.press("Enter")
    page.locator("#abstention").wait_for(state="visible")
    assert "No answer found" in page.inner_text("#abstention")
    assert page.inner_text("#sources-heading") == "Closest sources"
    assert page.locator("#sources li").count() == 2
    fact_source = page.locator("#sources button.cite").nth(1)  # the fact: it opens without a KB
    fact_source.focus()
    page.keyboard.press("Enter")  # a real button: the keyboard opens the source
    page.locator("#source-panel").wait_for(state="visible")
    assert page.evaluate("document.activeElement.id") == "source-panel"  # focus moves to what opened
    assert "Montgomery" in page.inner_text("#source-text")
    assert "revision" in page.inner_text("#source-provenance")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    _screenshot(page, "abstention-phone", tmp_path)


@pytest.fixture(scope="module")
def tiny_server(tiny_kb):  # noqa: F811 (fixture)
    """The fake engine, whose evidence is a passage of the tiny knowledge base this server serves."""
    engine = FakeEngine(delay_s=0.02)
    with live_server(tiny_kb.with_overrides(rate_limit_per_minute=0), engine=engine, ready_timeout=10) as url:
        yield engine, url


def test_sentences_appear_as_verified_and_open_with_their_sentence_highlighted(page, tiny_server, tmp_path):
    engine, url = tiny_server
    engine.resumed.clear()
    engine.hold.clear()  # the engine stops after its first verified sentence
    try:
        page.goto(url)
        page.fill("#question", QUESTION)
        page.press("#question", "Enter")
        page.locator("#answer .sentence").first.wait_for()
        assert page.inner_text("#answer") == "Montgomery is the capital of Alabama [1]."
        assert not engine.resumed.is_set()  # shown while the rest of the answer is still being written
        page.locator("#answer button.cite").first.click()  # a streamed sentence's citation opens at once
        page.locator("#source-text mark.cited").wait_for()
        assert page.inner_text("#source-text mark.cited") == (
            "Alabama's capital is Montgomery, and its largest city by population is Birmingham.")
    finally:
        engine.hold.set()
    page.locator("#sources li").first.wait_for()  # the result arrived
    assert page.inner_text("#answer") == ANSWER
    assert UNVERIFIED not in page.inner_text("#answer")  # the unsupported sentence never showed
    assert "1 unsupported sentence" in page.inner_text("#dropped")
    page.locator("#answer button.cite").nth(1).click()  # the second sentence: its own evidence sentence
    page.wait_for_function(
        "() => (document.querySelector('#source-text mark.cited') || {}).textContent"
        " === \"The state's rivers drain south into the Gulf of Mexico.\""
    )
    assert page.inner_text("#source-text") == PASSAGE_TEXT  # the whole passage, one sentence marked
    assert page.locator("#source-text mark").count() == 1
    assert page.inner_text("#source-title") == "Alabama" and page.inner_text("#source-section") == "Section: Geography"
    assert "highlighted" in page.inner_text("#source-provenance")
    _screenshot(page, "highlighted-source", tmp_path)
    _assert_nothing_executed(page)


def test_stop_closes_the_stream_and_the_server_frees_its_place(page, tiny_server, tmp_path):
    import json
    import time
    import urllib.request

    engine, url = tiny_server
    engine.hold.clear()  # the engine stops after its first verified sentence: the answer is still being written
    try:
        page.goto(url)
        page.fill("#question", QUESTION)
        page.press("#question", "Enter")
        page.locator("#answer .sentence").first.wait_for()
        assert page.is_visible("#stop-button")
        page.click("#stop-button")
        page.wait_for_function("() => document.getElementById('status').textContent.startsWith('Stopped')")
        stopped = time.monotonic()
        while time.monotonic() - stopped < 5:
            with urllib.request.urlopen(url + "/readyz", timeout=5) as response:
                if json.loads(response.read())["running"] == 0:
                    break
            time.sleep(0.02)
        assert time.monotonic() - stopped < 0.5  # the closed stream freed its admission place at once
    finally:
        engine.hold.set()
    assert page.is_hidden("#stop-button") and not page.is_disabled("#ask-button")
    assert page.inner_text("#answer") == "Montgomery is the capital of Alabama [1]."  # the checked part stays
    _screenshot(page, "stopped", tmp_path)
