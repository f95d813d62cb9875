"""A tiny knowledge base built in code, for fast unit tests of the writer, the vectors, loading and retrieval.

Five articles written as ``ParsedPage`` records (what the parser hands the writer),
four redirects, a temporary SQLite store and a FAISS index filled by
``HashingEmbedder``: a hashed bag-of-words projection, L2-normalised, so a question
sharing words with a passage has a high cosine with it and dense retrieval finds it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.orm import sessionmaker

from kg.infobox import InfoboxFact
from kg.page_parser import ParsedPage
from kg.passages import PassageDraft
from kgqa.settings import Settings

DIM = 1024
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset("a an and are as at by for from in is it its of on or the to was were what who which".split())


class HashingEmbedder:
    """A deterministic embedder: each distinct content word adds +-1 to one of ``DIM`` hashed coordinates, then L2 norm.

    Records every text it encodes, so tests can tell which passages were (re-)embedded.
    """

    dim = DIM
    batch_size = 1

    def __init__(self) -> None:
        self.encoded: list[str] = []
        self.warmed = False

    @property
    def ready(self) -> bool:
        return self.warmed

    def warm_up(self) -> None:
        self.warmed = True

    @property
    def identity(self):
        """What a vector index records of the embedder that filled it: this scheme and its width."""
        from models.embedding.identity import EmbedderIdentity

        fingerprint = hashlib.sha256(f"hashed bag of words, crc32, {DIM}-d".encode()).hexdigest()
        return EmbedderIdentity(name="hashed-bag-of-words", dim=DIM, fingerprint=fingerprint)

    @staticmethod
    def vector(text: str) -> np.ndarray:
        vector = np.zeros(DIM, dtype=np.float32)
        for word in set(_WORD.findall(text.lower())) - _STOPWORDS:
            if len(word) < 2:
                continue
            bucket = zlib.crc32(word.encode())
            vector[bucket % DIM] += 1.0 if (bucket >> 16) & 1 else -1.0
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        self.encoded.extend(texts)
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        return np.stack([self.vector(text) for text in texts])

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode_documents([text])[0]


def article(page_id: int, title: str, rev_id: int, passages: list[tuple[str, str]], *, facts=(), links=None,
            categories=(), aliases=()) -> ParsedPage:
    """An article as the parser hands it to the writer; passages are (section path, text), one section each."""
    drafts = [PassageDraft(section_ordinal=n, ordinal=n, section=section, text=text)
              for n, (section, text) in enumerate(passages)]
    return ParsedPage(page_id=page_id, title=title, rev_id=rev_id, timestamp="2020-01-01T00:00:00Z",
                      is_disambiguation=False, passages=drafts, aliases=[(title, "title"), *aliases],
                      facts=list(facts), links=dict(links or {}), categories=list(categories))


ALABAMA = article(303, "Alabama", 1001, [
    ("", "Alabama is a state in the southeastern region of the United States, bordered by Tennessee to the "
         "north, Georgia to the east and Mississippi to the west."),
    ("Geography", "Alabama's capital is Montgomery, and its largest city by population is Birmingham. The "
                  "state's rivers drain south into the Gulf of Mexico."),
    ("History", "Alabama was admitted to the Union as the twenty-second state on December 14, 1819, after a "
                "constitutional convention met in Huntsville."),
], facts=[
    InfoboxFact("capital", "capital", "Montgomery, Alabama", "Montgomery"),
    InfoboxFact("largest_city", "LargestCity", None, "Birmingham"),
    InfoboxFact("admittance_date", "AdmittanceDate", None, "December 14, 1819"),
], links={"Montgomery, Alabama": 1, "Gulf of Mexico": 1, "Huntsville, Alabama": -1},
    categories=["States of the United States"])

MONTGOMERY = article(1002, "Montgomery, Alabama", 2001, [
    ("", "Montgomery is a city in the state of Alabama and the seat of Montgomery County, on the Alabama "
         "River in the Gulf Coastal Plain."),
    ("History", "Montgomery was incorporated in 1819 as a merger of two towns along the Alabama River; it "
                "became the seat of the state government in 1846."),
], facts=[InfoboxFact("founded", "founded", None, "1819")],
    links={"Alabama": 0}, categories=["Cities in Alabama"], aliases=[("Montgomery", "disambiguator")])

ANIMAL_FARM = article(620, "Animal Farm", 3001, [
    ("", "Animal Farm is an allegorical novella by George Orwell, first published in England on 17 August "
         "1945. It tells of farm animals who rebel against their human farmer."),
    ("Plot", "Old Major, a prize boar, calls the animals to a meeting in the big barn, where he describes a "
             "dream of a world without men and teaches them the song Beasts of England."),
], facts=[
    InfoboxFact("author", "author", "George Orwell", "George Orwell"),
    InfoboxFact("published", "published", None, "17 August 1945"),
], links={"George Orwell": 0}, categories=["1945 novels"])

ORWELL = article(11891, "George Orwell", 4001, [
    ("", "Eric Arthur Blair, known by his pen name George Orwell, was an English novelist, essayist, "
         "journalist and critic whose work is marked by lucid prose and opposition to totalitarianism."),
    ("Early life", "Blair was born in Motihari, Bengal, British India, on 25 June 1903, and was educated at "
                   "Eton College on a scholarship."),
], facts=[
    InfoboxFact("birth_place", "birth_place", None, "Motihari, Bengal, British India"),
    InfoboxFact("birth_date", "birth_date", None, "25 June 1903"),
], links={"Animal Farm": -1, "Eton College": 1}, aliases=[("Eric Arthur Blair", "bold")])

EINSTEIN = article(736, "Albert Einstein", 5001, [
    ("", "Albert Einstein was a German-born theoretical physicist who developed the theory of relativity, "
         "one of the two pillars of modern physics."),
    ("Nobel Prize", "Einstein received the 1921 Nobel Prize in Physics for his services to theoretical physics "
                    "and his discovery of the law of the photoelectric effect."),
], facts=[InfoboxFact("birth_place", "birth_place", None, "Ulm, Kingdom of Württemberg, German Empire")],
    categories=["Nobel laureates in Physics"])

PAGES: tuple[ParsedPage, ...] = (ALABAMA, MONTGOMERY, ANIMAL_FARM, ORWELL, EINSTEIN)


@dataclasses.dataclass(frozen=True)
class RedirectPage:
    page_id: int
    title: str
    target: str
    rev_id: int


REDIRECTS: tuple[RedirectPage, ...] = (
    RedirectPage(9001, "AnimalFarm", "Animal Farm", 9101),
    RedirectPage(9002, "Eric Blair", "George Orwell", 9102),
    RedirectPage(9003, "Einstein", "Albert Einstein", 9103),
    RedirectPage(9004, "Lost Continent", "Atlantis", 9104),  # a target that is not ingested
)


def tiny_settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, database_url="")


def open_store(settings: Settings) -> sessionmaker:
    """Sessions on a (new or existing) store under ``settings``, its tables created."""
    from kg.store import init_db, make_engine, session_factory

    settings.index_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    init_db(engine)
    return session_factory(engine)


def write_tiny_kb(sessions: sessionmaker, pages: Sequence[ParsedPage] = PAGES,
                  redirects: Sequence[RedirectPage] = REDIRECTS) -> None:
    """The pages and redirects written and committed the way ingest writes a batch, redirects linked."""
    from kg.writer import link_redirects, next_vector_id, write_page, write_redirect

    with sessions() as session:
        vector_id = next_vector_id(session)
        for page in pages:
            _, written = write_page(session, page, vector_id)
            vector_id += written
        for redirect in redirects:
            write_redirect(session, redirect.page_id, redirect.title, redirect.target, redirect.rev_id)
        link_redirects(session)
        session.commit()


def write_article(sessions: sessionmaker, page: ParsedPage, *, first_vector_id: int | None = None,
                  index_floor: int = 0) -> tuple[list[int], int]:
    """One article written and committed as a batch of its own, its vector ids after any in the store or index.

    Returns (vector ids of replaced passages, to drop from the index; passages written).
    """
    from kg.writer import next_vector_id, write_page

    with sessions() as session:
        start = next_vector_id(session, floor=index_floor) if first_vector_id is None else first_vector_id
        result = write_page(session, page, start)
        session.commit()
    return result


def build_tiny_kb(data_dir: Path, embedder=None) -> Settings:
    """A complete tiny knowledge base under ``data_dir``: store, saved vector index and graph snapshot."""
    from kg.graph import rebuild_graph
    from kg.vectors import PassageVectors

    settings = tiny_settings(data_dir)
    sessions = open_store(settings)
    write_tiny_kb(sessions)
    vectors = PassageVectors(settings, embedder or HashingEmbedder(), sessions)
    vectors.warm_up()
    vectors.embed_pending()
    vectors.checkpoint(force=True)
    with sessions() as session:
        rebuild_graph(settings, session)
    sessions.kw["bind"].dispose()
    return settings


@pytest.fixture
def tiny_store(tmp_path):
    """Settings and sessions of a tiny store whose passages are written but not embedded yet."""
    settings = tiny_settings(tmp_path / "data")
    sessions = open_store(settings)
    write_tiny_kb(sessions)
    yield settings, sessions
    sessions.kw["bind"].dispose()


@pytest.fixture(scope="module")
def tiny_kb(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A tiny knowledge base, read-only for the tests of a module; test modules import this fixture."""
    return build_tiny_kb(tmp_path_factory.mktemp("tiny-kb") / "data")


@pytest.fixture(scope="module")
def loaded_tiny_kb(tiny_kb):
    """The tiny knowledge base loaded for retrieval (``KnowledgeBase`` over ``HashingEmbedder``), read-only."""
    from retrieval.knowledge_base import KnowledgeBase

    knowledge_base = KnowledgeBase(tiny_kb, embedder=HashingEmbedder())
    knowledge_base.warm_up()
    return knowledge_base
