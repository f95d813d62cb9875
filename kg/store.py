"""The SQL store: pages, passages, entities with aliases, triples and ingest runs (SQLAlchemy 2.0).

Callers open and commit sessions; functions here never commit on their own.
SQLite is the default (WAL mode); PostgreSQL (``postgresql+psycopg://``) runs the
same schema and code, and any other SQLAlchemy URL may work. Ids are 64-bit on every
backend, and the declared string lengths are limits the writer keeps on every backend
(PostgreSQL enforces them, SQLite would not), so both hold the same rows.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (
    BigInteger,
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
    text,
)
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from kg.errors import DatabaseUnreachable, IngestRunning
from kgqa.settings import Settings

# Page, revision, entity, vector and row ids: BIGINT on PostgreSQL (revision ids near 2^31,
# FAISS ids are int64, triple ids grow with every re-ingest); SQLite's INTEGER is 64-bit
# already, and only INTEGER PRIMARY KEY is its auto-incrementing rowid.
Id = BigInteger().with_variant(Integer, "sqlite")
TITLE_CHARS = 512  # titles, link targets, aliases; MediaWiki titles stop at 255 bytes
KEY_CHARS = 128  # infobox predicates and raw field names
TIMESTAMP_CHARS = 32


def fits_title(value: str) -> bool:
    """Whether ``value`` can be stored as a title, link target or alias (longer ones name no page)."""
    return 0 < len(value) <= TITLE_CHARS


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Page(Base):
    """A main-namespace article as last ingested (redirect pages become aliases, not pages)."""

    __tablename__ = "pages"

    page_id: Mapped[int] = mapped_column(Id, primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_CHARS), unique=True)
    rev_id: Mapped[int] = mapped_column(Id)
    timestamp: Mapped[str] = mapped_column(String(TIMESTAMP_CHARS))
    is_disambiguation: Mapped[bool] = mapped_column(Boolean, default=False)
    url: Mapped[str] = mapped_column(Text)  # percent-encoding can triple a title


class Passage(Base):
    """A section-aware chunk of clean article text.

    ``id`` is stable: "<page>:<rev>:<section ordinal>:<ordinal>". ``vector_id`` is
    the int64 id of its vector in the FAISS index.
    """

    __tablename__ = "passages"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    vector_id: Mapped[int] = mapped_column(Id, unique=True)
    page_id: Mapped[int] = mapped_column(Id, ForeignKey("pages.page_id", ondelete="CASCADE"), index=True)
    rev_id: Mapped[int] = mapped_column(Id)
    title: Mapped[str] = mapped_column(String(TITLE_CHARS))
    section: Mapped[str] = mapped_column(Text, default="")  # " > "-joined headings, unbounded
    ordinal: Mapped[int] = mapped_column(Integer)  # position within the page
    text: Mapped[str] = mapped_column(Text)
    embedded: Mapped[bool] = mapped_column(Boolean, default=False)  # its vector is in the index


class Entity(Base):
    """A knowledge-graph node: one per article; ``entity_id`` equals the page id."""

    __tablename__ = "entities"

    entity_id: Mapped[int] = mapped_column(Id, primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_CHARS), unique=True)
    is_disambiguation: Mapped[bool] = mapped_column(Boolean, default=False)


class Alias(Base):
    """A name that refers to an entity: its title, a redirect, the title without disambiguator, a bold lead name,
    a person's surname."""

    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("norm", "entity_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    norm: Mapped[str] = mapped_column(String(TITLE_CHARS), index=True)  # case and punctuation folded
    alias: Mapped[str] = mapped_column(String(TITLE_CHARS))
    entity_id: Mapped[int] = mapped_column(Id, ForeignKey("entities.entity_id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(16))  # title | redirect | disambiguator | bold | surname


class Triple(Base):
    """A fact (subject, predicate, object) with provenance.

    ``kind`` is infobox | links_to | in_category. The object is an entity when
    ``object_id`` is set (or, for a link to a page not ingested yet, only
    ``object_title``), else the literal ``object_literal``.
    """

    __tablename__ = "triples"
    __table_args__ = (Index("ix_triples_subject_kind", "subject_id", "kind"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    subject_id: Mapped[int] = mapped_column(Id, ForeignKey("entities.entity_id", ondelete="CASCADE"))
    predicate: Mapped[str] = mapped_column(String(KEY_CHARS), index=True)
    object_title: Mapped[str] = mapped_column(String(TITLE_CHARS), default="", index=True)
    object_literal: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(16))
    page_id: Mapped[int] = mapped_column(Id)  # provenance: page and revision it was read from
    rev_id: Mapped[int] = mapped_column(Id)
    field: Mapped[str] = mapped_column(String(KEY_CHARS), default="")  # raw infobox key
    passage_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Redirect(Base):
    """A redirect page: its title becomes an alias of the target once the target is ingested."""

    __tablename__ = "redirects"

    page_id: Mapped[int] = mapped_column(Id, primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_CHARS))
    norm: Mapped[str] = mapped_column(String(TITLE_CHARS), index=True)
    target: Mapped[str] = mapped_column(String(TITLE_CHARS), index=True)
    rev_id: Mapped[int] = mapped_column(Id)


class IngestRun(Base):
    """One `kgqa ingest` invocation, so a killed run can be seen and resumed."""

    __tablename__ = "ingest_runs"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    dump: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | done | failed
    pages: Mapped[int] = mapped_column(Integer, default=0)
    redirects: Mapped[int] = mapped_column(Integer, default=0)
    passages: Mapped[int] = mapped_column(Integer, default=0)
    triples: Mapped[int] = mapped_column(Integer, default=0)
    last_page_id: Mapped[int] = mapped_column(Id, default=0)
    error: Mapped[str] = mapped_column(Text, default="")


class Removal(Base):
    """What one sync (``kgqa ingest --sync``) or ``kgqa kg delete`` removed, committed with the removal itself."""

    __tablename__ = "removals"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # sync | delete
    source: Mapped[str] = mapped_column(Text, default="")  # the dump synced with, or the names deleted
    wiki: Mapped[str] = mapped_column(String(64), default="")  # the dump's <dbname> (sync)
    run_id: Mapped[int | None] = mapped_column(Id, nullable=True)  # the ingest run of a sync
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    pages: Mapped[int] = mapped_column(Integer, default=0)  # articles removed
    redirects: Mapped[int] = mapped_column(Integer, default=0)  # redirect pages removed
    redirected: Mapped[int] = mapped_column(Integer, default=0)  # articles the run turned into redirects
    passages: Mapped[int] = mapped_column(Integer, default=0)  # passages removed, their vectors with them
    triples: Mapped[int] = mapped_column(Integer, default=0)
    aliases: Mapped[int] = mapped_column(Integer, default=0)
    titles: Mapped[str] = mapped_column(Text, default="")  # JSON list: the first titles removed


def database_url(url: str) -> URL:
    """``url`` parsed; a bare ``postgresql://`` gets psycopg 3, the PostgreSQL driver kgqa installs."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def describe_database(url: str) -> str:
    """The URL as a user may see it: the password hidden."""
    return database_url(url).render_as_string(hide_password=True)


SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA foreign_keys=ON", "PRAGMA synchronous=NORMAL")
# Ingest's own SQLite connections: a 256 MB page cache keeps the hot parts of the indexes that every batch
# updates (titles, aliases, triple objects) in memory, and the WAL is copied into the database every
# 64 MB instead of every 4 MB, so a commit pays the two fsyncs of a checkpoint 16x less often.
# bench/scale.py, 15,000 pages: writing and embedding took 22.5 s against 26-27 s with SQLite's defaults.
BULK_WRITE_PRAGMAS = ("PRAGMA cache_size=-262144", "PRAGMA wal_autocheckpoint=16384")


def make_engine(url: str, *, bulk_writes: bool = False) -> Engine:
    """An engine for ``url``; SQLite gets WAL mode and foreign keys, PostgreSQL sessions run in UTC.

    (UTC so that timestamps read back as they are written, as on SQLite, whatever the server's zone.)
    ``bulk_writes`` gives SQLite connections the settings of a long run of large transactions (ingest).
    """
    parsed = database_url(url)
    in_utc = (parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg"
              and "options" not in parsed.query)  # the URL's own libpq options win
    engine = create_engine(parsed, connect_args={"options": "-c timezone=UTC"} if in_utc else {})
    if engine.dialect.name == "sqlite":
        pragmas = SQLITE_PRAGMAS + (BULK_WRITE_PRAGMAS if bulk_writes else ())

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            for pragma in pragmas:
                cur.execute(pragma)
            cur.close()

    return engine


def unreachable_error(engine: Engine, exc: OperationalError) -> DatabaseUnreachable:
    """The one-line error for a database that refused the connection (server down, bad credentials, no such db)."""
    reason = str(exc.orig or exc).strip().splitlines()
    return DatabaseUnreachable(f"cannot open the database {describe_database(str(engine.url))}: "
                               f"{reason[0] if reason else type(exc).__name__}")


# The PostgreSQL advisory lock key of `kgqa ingest` (any fixed int64; advisory locks are per database).
INGEST_LOCK_KEY = 0x6B67_7161_696E_6A73  # "kgqainjs"


@contextmanager
def ingest_lock(engine: Engine) -> Iterator[None]:
    """Hold the database's one-writer ingest lock for the block, or raise ``IngestRunning`` at once.

    PostgreSQL: a session-level advisory lock on a connection of its own (autocommit, so
    no transaction stays open for the run). SQLite: an exclusive ``flock`` on the file
    ``<database>.ingest-lock``. Both are released by the operating system or the server
    when the holder dies, so a killed run never leaves a stale lock behind; any other
    backend runs unlocked.
    """
    busy = IngestRunning(f"another `kgqa ingest` is writing to {describe_database(str(engine.url))}; "
                         "wait for it to finish, then run this one again")
    if engine.dialect.name == "postgresql":
        try:
            connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except OperationalError as exc:
            raise unreachable_error(engine, exc) from exc
        try:
            if not connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": INGEST_LOCK_KEY}):
                raise busy
            yield
        finally:
            connection.invalidate()  # ends the server session, which releases its lock whatever happened
            connection.close()
        return
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if database in (None, "", ":memory:"):
        yield
        return
    try:
        fd = os.open(f"{database}.ingest-lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DatabaseUnreachable(f"cannot open the database {database}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        yield  # the lock goes with the descriptor, closed below
    finally:
        os.close(fd)


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

    from kgqa.errors import KnowledgeBaseMissing

    url = database_url(settings.database_url)
    where = settings.data_dir if url.get_backend_name() == "sqlite" else describe_database(settings.database_url)
    missing = KnowledgeBaseMissing(f"no knowledge base in {where}: run `kgqa ingest <dump>` first")
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not Path(url.database).is_file():
            raise missing
    engine = make_engine(settings.database_url)
    try:
        tables = set(inspect(engine).get_table_names())
    except OperationalError as exc:
        engine.dispose()
        raise unreachable_error(engine, exc) from exc
    if not {Page.__tablename__, Passage.__tablename__, Triple.__tablename__} <= tables:
        engine.dispose()
        raise missing
    if require_passages:
        with engine.connect() as connection:
            if not connection.scalar(select(func.count()).select_from(Passage)):
                engine.dispose()
                raise missing
    return engine
