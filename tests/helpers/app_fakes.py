"""A deterministic stand-in for the QA engine, for app tests that need exact tokens or forced failures.

It honours the engine's interface (``warm_up``, ``ready``, ``ask``, ``ask_stream``)
and builds real ``QAResult`` records, so the views serialise what the real engine returns.
"""

from __future__ import annotations

import threading
import time

import pytest

from kgqa.errors import InvalidQuestion, Overloaded
from kgqa.records import AnswerSentence, Citation, FactHit, LinkedEntity, QAResult, StreamEvent

TOKENS = ["Montgomery", " is", " the", " capital", " of", " Alabama", "."]


def fake_result(question: str, *, abstained: bool = False) -> QAResult:
    citation = Citation(
        id="1",
        kind="passage",
        title="Alabama",
        url="https://en.wikipedia.org/wiki/Alabama",
        snippet="Alabama's capital is Montgomery.",
        score=0.9,
        passage_id="303:1:0:0",
    )
    fact = FactHit(
        triple_id=7, subject="Alabama", predicate="capital", object="Montgomery", object_is_entity=False,
        page_id=303, rev_id=1, field="capital", url="https://en.wikipedia.org/wiki/Alabama", score=0.8,
    )
    return QAResult(
        question=question,
        answer="" if abstained else "Montgomery is the capital of Alabama [1].",
        generated="".join(TOKENS),
        sentences=[] if abstained else [
            AnswerSentence(text="Montgomery is the capital of Alabama [1].", citations=["1"], supported=True, support=0.9)
        ],
        citations=[citation, Citation(id="F1", kind="fact", title="Alabama", url=fact.url,
                                      snippet="Alabama capital Montgomery", score=0.8, triple_id=7)],
        facts=[fact],
        entities=[LinkedEntity(entity_id=303, title="Alabama", mention="Alabama", alias="alabama", url=fact.url)],
        abstained=abstained,
        abstain_reason="no supported sentence" if abstained else "",
    )


class FakeEngine:
    """Streams ``TOKENS`` then a fixed result; ``overloaded``/``delay_s``/``block`` force the hard cases."""

    def __init__(self, *, overloaded: bool = False, delay_s: float = 0.0, abstain: bool = False):
        self.overloaded = overloaded
        self.delay_s = delay_s
        self.abstain = abstain
        self.block = threading.Event()  # set() to let blocked asks finish
        self.block.set()
        self.calls: list[dict] = []
        self._ready = False

    def warm_up(self) -> None:
        self._ready = True

    @property
    def ready(self) -> bool:
        return self._ready

    def _check(self, question: str) -> None:
        if not question.strip():
            raise InvalidQuestion("the question is empty")
        if self.overloaded:
            raise Overloaded("the model queue is full", retry_after=3)

    def ask(self, question: str, *, k=None, history=None) -> QAResult:
        self.calls.append({"question": question, "k": k, "history": history})
        self._check(question)
        self.block.wait(10)
        return fake_result(question, abstained=self.abstain)

    def ask_stream(self, question: str, *, k=None, history=None):
        self.calls.append({"question": question, "k": k, "history": history})
        self._check(question)
        self.block.wait(10)
        for token in TOKENS:
            time.sleep(self.delay_s)
            yield StreamEvent(type="token", text=token)
        yield StreamEvent(type="result", result=fake_result(question, abstained=self.abstain))


def make_app(data_dir, engine=None, *, warm: bool = True, **overrides):
    """An app on ``data_dir`` (no KB needed) around ``engine``, warmed unless ``warm`` is False."""
    from app import create_app
    from kgqa.settings import Settings

    app = create_app(Settings(data_dir=data_dir, **overrides), engine=engine or FakeEngine())
    app.config["TESTING"] = True
    if warm:
        assert app.extensions["kgqa_runtime"].wait_ready(5)
    return app


def sse_events(body: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, checking every block is a data line or a comment."""
    assert body.endswith("\n\n"), "an SSE body ends with a blank line"
    payloads = []
    for block in body[:-2].split("\n\n"):
        lines = block.split("\n")
        assert all(line.startswith(("data: ", ":")) for line in lines), block
        payloads.extend(line[len("data: "):] for line in lines if line.startswith("data: "))
    return payloads


HOSTILE_TEXT = (
    'Hostile <script>window.__pwned = "script"; alert(1)</script> text '
    '<img src=x onerror="window.__pwned = \'img\'; alert(2)"> ends here.'
)


def hostile_kb_copy(kb_settings, dest):
    """A copy of a built KB with one passage and one fact whose text is a script-injection payload.

    Returns ``(settings, passage_id, entity_title)``; the copy is what the XSS tests serve.
    """
    import shutil

    from sqlalchemy import select

    from kg.store import Entity, Page, Passage, Triple, make_engine, session_factory

    data_dir = dest / "data"
    # models/ holds the encoders derived at ingest time: copying them beats deriving them again
    shutil.copytree(kb_settings.data_dir, data_dir, ignore=shutil.ignore_patterns("reports"))
    settings = kb_settings.with_overrides(data_dir=data_dir)
    engine = make_engine(settings.database_url)
    with session_factory(engine)() as session:
        page = session.scalars(select(Page).order_by(Page.page_id)).first()
        max_vector = max(session.scalars(select(Passage.vector_id)).all() or [0])
        passage_id = f"{page.page_id}:{page.rev_id}:999:0"
        session.add(Passage(id=passage_id, vector_id=max_vector + 1000, page_id=page.page_id, rev_id=page.rev_id,
                            title=page.title, section="<b>Injected</b>", ordinal=999, text=HOSTILE_TEXT,
                            embedded=False))
        entity = session.get(Entity, page.page_id)
        session.add(Triple(subject_id=entity.entity_id, predicate="motto", object_title="",
                           object_literal=HOSTILE_TEXT, kind="infobox", page_id=page.page_id, rev_id=page.rev_id,
                           field="motto<script>"))
        session.commit()
        title = entity.title
    engine.dispose()
    return settings, passage_id, title


@pytest.fixture
def engine() -> FakeEngine:
    """A fresh fake engine per test; test modules import this fixture with ``client``."""
    return FakeEngine()


@pytest.fixture
def client(tmp_path, engine):
    """A test client of an app built around ``engine`` on an empty data folder."""
    return make_app(tmp_path / "data", engine).test_client()


@pytest.fixture(scope="module")
def hostile_kb(sample_kb, tmp_path_factory):
    """A copy of the sample KB with ``<script>``/``<img onerror>`` payloads; test modules import this fixture."""
    return hostile_kb_copy(sample_kb, tmp_path_factory.mktemp("hostile-kb"))

