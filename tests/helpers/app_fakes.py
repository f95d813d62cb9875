"""A deterministic stand-in for the QA engine, for app tests that need exact events or forced failures.

It honours the engine's interface (``warm_up``, ``ready``, ``ask``, ``ask_stream``)
and builds real ``QAResult`` records, so the views serialise what the real engine
returns. Its stream is the engine's: the LM's raw text as ``token`` events (one of
its sentences is unsupported, so it must never reach a client as answer text), a
``sentence`` event as each answer sentence is verified, then the ``result``. The
evidence is a real passage of the tiny knowledge base (``tests.helpers.tiny_kb``),
so a page served over that knowledge base can open and highlight it.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
from tests.helpers.tiny_kb import ALABAMA

from kg.passages import passage_id
from kgqa.errors import InvalidQuestion, Overloaded
from kgqa.records import AnswerSentence, Citation, FactHit, LinkedEntity, QAResult, StreamEvent

QUESTION = "What is the capital of Alabama?"
_GEOGRAPHY = ALABAMA.passages[1]
PASSAGE_ID = passage_id(ALABAMA.page_id, ALABAMA.rev_id, _GEOGRAPHY.section_ordinal, _GEOGRAPHY.ordinal)
PASSAGE_TEXT = _GEOGRAPHY.text
ALABAMA_URL = "https://en.wikipedia.org/wiki/Alabama"

# What the LM writes: (sentence, the evidence sentence of PASSAGE_TEXT that verifies it, or None: dropped).
GENERATED = [
    ("Montgomery is the capital of Alabama.", "Alabama's capital is Montgomery, and its largest city by population is Birmingham."),
    ("Birmingham is the capital too.", None),
    ("The state's rivers drain south into the Gulf of Mexico.", "The state's rivers drain south into the Gulf of Mexico."),
]
UNVERIFIED = "Birmingham is the capital too."
ANSWER = "Montgomery is the capital of Alabama [1]. The state's rivers drain south into the Gulf of Mexico [1]."
TOKENS = re.findall(r"\s*\S+", " ".join(sentence for sentence, _ in GENERATED))
REFUSAL_TOKENS = ["I", " do", " not", " know", "."]


def evidence_citation(evidence: str, cid: str = "1") -> Citation:
    """The citation of PASSAGE_TEXT that points at its sentence ``evidence``."""
    start = PASSAGE_TEXT.index(evidence)
    return Citation(id=cid, kind="passage", title="Alabama", section="Geography", url=ALABAMA_URL, snippet=evidence,
                    score=0.9, passage_id=PASSAGE_ID, sentence=evidence, sentence_start=start,
                    sentence_end=start + len(evidence))


FACT = FactHit(
    triple_id=7, subject="Alabama", predicate="capital", object="Montgomery", object_is_entity=False,
    page_id=ALABAMA.page_id, rev_id=ALABAMA.rev_id, field="capital", url=ALABAMA_URL, score=0.8,
)


def abstention_text(question: str) -> str:
    return f"The knowledge base does not say: “{question.strip()}”. The closest sources are listed below."


def fake_result(question: str, *, abstained: bool = False) -> QAResult:
    entities = [LinkedEntity(entity_id=ALABAMA.page_id, title="Alabama", mention="Alabama", alias="alabama",
                             url=ALABAMA_URL)]
    if abstained:
        text = abstention_text(question)
        closest = Citation(id="1", kind="passage", title="Alabama", section="Geography", url=ALABAMA_URL,
                           snippet=PASSAGE_TEXT, score=0.4, passage_id=PASSAGE_ID)
        fact = Citation(id="F1", kind="fact", title="Alabama", section="Infobox: capital", url=ALABAMA_URL,
                        snippet="Alabama — capital: Montgomery", score=0.8, triple_id=FACT.triple_id)
        return QAResult(
            question=question, answer=text, generated="".join(REFUSAL_TOKENS),
            sentences=[AnswerSentence(text=text, citations=[], supported=False, support=0.0)],
            citations=[closest, fact], facts=[FACT], entities=entities, abstained=True,
            abstain_reason="the model found no answer in the evidence",
            dropped_sentences=["".join(REFUSAL_TOKENS)],
        )
    verified = [(sentence, evidence) for sentence, evidence in GENERATED if evidence]
    return QAResult(
        question=question,
        answer=ANSWER,
        generated="".join(TOKENS),
        sentences=[AnswerSentence(text=sentence, citations=["1"], supported=True, support=0.9)
                   for sentence, _ in verified],
        citations=[evidence_citation(verified[0][1])],  # one citation per id: the first sentence it backs
        facts=[FACT],
        entities=entities,
        abstained=False,
        dropped_sentences=[UNVERIFIED],
    )


class FakeEngine:
    """Streams ``TOKENS`` with a ``sentence`` event after each verified sentence, then the result.

    ``overloaded``/``delay_s``/``block``/``hold`` force the hard cases: ``block`` (cleared)
    stops an ask before anything; ``hold`` (cleared) stops a stream right after its first
    verified sentence, until the test sets it (``first_sentence`` says it got there, ``resumed``
    that it went on).
    """

    def __init__(self, *, overloaded: bool = False, delay_s: float = 0.0, abstain: bool = False):
        self.overloaded = overloaded
        self.delay_s = delay_s
        self.abstain = abstain
        self.block = threading.Event()  # set() to let blocked asks finish
        self.block.set()
        self.hold = threading.Event()  # set() to let a stream go on after its first sentence
        self.hold.set()
        self.first_sentence = threading.Event()
        self.resumed = threading.Event()  # set once a stream goes on after its first sentence
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
        return self._events(question)

    def _events(self, question: str):
        self.block.wait(10)
        if self.abstain:
            for token in REFUSAL_TOKENS:
                time.sleep(self.delay_s)
                yield StreamEvent(type="token", text=token)
        else:
            tokens, sent = iter(TOKENS), 0
            for sentence, evidence in GENERATED:
                for token in tokens:
                    time.sleep(self.delay_s)
                    yield StreamEvent(type="token", text=token)
                    if token.endswith("."):
                        break
                if evidence is None:
                    continue
                yield StreamEvent(type="sentence", citations=[evidence_citation(evidence)],
                                  sentence=AnswerSentence(text=sentence, citations=["1"], supported=True, support=0.9))
                if not sent:
                    self.first_sentence.set()
                    self.hold.wait(10)  # returns at once unless a test holds the stream here
                    self.resumed.set()
                sent += 1
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

