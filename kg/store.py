"""The SQL store: pages, passages, entities with aliases, triples and ingest runs (SQLAlchemy 2.0).

Callers open and commit sessions; functions here never commit on their own.
SQLite is the default (WAL mode); any SQLAlchemy URL works.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from kgqa.settings import Settings


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Page(Base):
    """A main-namespace article as last ingested (redirect pages become aliases, not pages)."""

    __tablename__ = "pages"

    page_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(512), unique=True)
    rev_id: Mapped[int] = mapped_column(Integer)
    timestamp: Mapped[str] = mapped_column(String(32))
    is_disambiguation: Mapped[bool] = mapped_column(Boolean, default=False)
    url: Mapped[str] = mapped_column(String(1024))


class Passage(Base):
    """A section-aware chunk of clean article text.

    ``id`` is stable: "<page>:<rev>:<section ordinal>:<ordinal>". ``vector_id`` is
    the int64 id of its vector in the FAISS index.
    """

    __tablename__ = "passages"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    vector_id: Mapped[int] = mapped_column(Integer, unique=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.page_id", ondelete="CASCADE"), index=True)
    rev_id: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(512))
    section: Mapped[str] = mapped_column(String(1024), default="")
    ordinal: Mapped[int] = mapped_column(Integer)  # position within the page
    text: Mapped[str] = mapped_column(Text)
    embedded: Mapped[bool] = mapped_column(Boolean, default=False)  # its vector is in the index


class Entity(Base):
    """A knowledge-graph node: one per article; ``entity_id`` equals the page id."""

    __tablename__ = "entities"

    entity_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(512), unique=True)
    is_disambiguation: Mapped[bool] = mapped_column(Boolean, default=False)


class Alias(Base):
    """A name that refers to an entity: its title, a redirect, the title without disambiguator, a bold lead name."""

    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("norm", "entity_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    norm: Mapped[str] = mapped_column(String(512), index=True)  # case and punctuation folded
    alias: Mapped[str] = mapped_column(String(512))
    entity_id: Mapped[int] = mapped_column(ForeignKey("entities.entity_id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(16))  # title | redirect | disambiguator | bold


class Triple(Base):
    """A fact (subject, predicate, object) with provenance.

    ``kind`` is infobox | links_to | in_category. The object is an entity when
    ``object_id`` is set (or, for a link to a page not ingested yet, only
    ``object_title``), else the literal ``object_literal``.
    """

    __tablename__ = "triples"
    __table_args__ = (Index("ix_triples_subject_kind", "subject_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("entities.entity_id", ondelete="CASCADE"))
    predicate: Mapped[str] = mapped_column(String(128), index=True)
    object_title: Mapped[str] = mapped_column(String(512), default="", index=True)
    object_literal: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(16))
    page_id: Mapped[int] = mapped_column(Integer)  # provenance: page and revision it was read from
    rev_id: Mapped[int] = mapped_column(Integer)
    field: Mapped[str] = mapped_column(String(128), default="")  # raw infobox key
    passage_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Redirect(Base):
    """A redirect page: its title becomes an alias of the target once the target is ingested."""

    __tablename__ = "redirects"

    page_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(512))
    norm: Mapped[str] = mapped_column(String(512), index=True)
    target: Mapped[str] = mapped_column(String(512), index=True)
    rev_id: Mapped[int] = mapped_column(Integer)


class IngestRun(Base):
    """One `kgqa ingest` invocation, so a killed run can be seen and resumed."""

    __tablename__ = "ingest_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dump: Mapped[str] = mapped_column(String(2048))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | done | failed
    pages: Mapped[int] = mapped_column(Integer, default=0)
    redirects: Mapped[int] = mapped_column(Integer, default=0)
    passages: Mapped[int] = mapped_column(Integer, default=0)
    triples: Mapped[int] = mapped_column(Integer, default=0)
    last_page_id: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL mode and foreign keys."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    return engine


def init_db(engine: Engine) -> None:
    Base.metadata.create_all(engine)


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def wikipedia_url(title: str) -> str:
    """The canonical enwiki URL of a title."""
    from urllib.parse import quote

    return "https://en.wikipedia.org/wiki/" + quote(title.replace(" ", "_"), safe="_()-,.'!:/")


def open_knowledge_base(settings: Settings, *, require_passages: bool = False) -> Engine:
    """An engine on an ingested knowledge base, or ``KnowledgeBaseMissing`` saying how to make one.

    The one presence check: a SQLite file that does not exist is never created here,
    and a database without the store's tables holds no KB (nor, for answering
    questions, one without a single passage).
    """
    from sqlalchemy import func, inspect, select
    from sqlalchemy.engine import make_url

    from kgqa.errors import KnowledgeBaseMissing

    missing = KnowledgeBaseMissing(f"no knowledge base in {settings.data_dir}: run `kgqa ingest <dump>` first")
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not Path(url.database).is_file():
            raise missing
    engine = make_engine(settings.database_url)
    tables = set(inspect(engine).get_table_names())
    if not {Page.__tablename__, Passage.__tablename__, Triple.__tablename__} <= tables:
        engine.dispose()
        raise missing
    if require_passages:
        with engine.connect() as connection:
            if not connection.scalar(select(func.count()).select_from(Passage)):
                engine.dispose()
                raise missing
    return engine
