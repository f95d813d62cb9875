"""The fact graph as a NetworkX ``MultiDiGraph``: built from the SQL triples, persisted as a pickle.

SQL is the source of truth (queryable piecemeal, scales); the pickle is a
fast-loading snapshot stamped with the SQL state it was built from, so a stale
snapshot (say, after a killed run) is rebuilt instead of trusted.

The snapshot holds entities, aliases, infobox facts and categories, not the page
links: Wikipedia has about 25 per article, hundreds of millions in all, and
NetworkX spends hundreds of bytes on each edge. Retrieval reads links from the
memory-mapped CSR graph (``kg.link_graph``) and never this graph, so it is built on
first use (``load_graph``), not by every ingest: at 1M pages its 5.7M fact and
category edges took 4-5 GB while an ingest ends (bench/scale.py). ``graph_lines``
streams the whole graph, links included, from SQL for exports of any size, and
``build_graph(links=True)`` puts the links in a NetworkX graph that fits.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import networkx as nx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kg import index_files
from kg.store import Alias, Entity, IngestRun, Redirect, Triple, open_knowledge_base, session_factory
from kgqa.settings import Settings

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: page links left out of the snapshot


def sql_stamp(session: Session) -> tuple:
    """Changes whenever entities, aliases or triples change.

    Counts and largest ids alone can miss a change: SQLite reuses the largest rowid
    after the last rows are deleted, so re-ingesting the last page can leave both the
    same. Every ingest leaves a run row, so the latest run's progress is part of it.
    """
    last_run = session.execute(select(IngestRun.id, IngestRun.status, IngestRun.last_page_id, IngestRun.pages,
                                      IngestRun.finished_at).order_by(IngestRun.id.desc()).limit(1)).first()
    return (FORMAT_VERSION,
            *session.execute(select(func.count(), func.max(Triple.id))).one(),
            *session.execute(select(func.count(), func.max(Alias.id))).one(),
            session.scalar(select(func.count()).select_from(Entity)),
            tuple(last_run) if last_run else None)


def build_graph(session: Session, *, links: bool = False) -> nx.MultiDiGraph:
    """Entities with aliases; infobox and ``in_category`` edges (``links_to`` too with ``links``), with provenance.

    Link and fact objects are resolved through redirects; an object that is not an
    ingested article becomes a ``missing`` node, a literal value a ``literal`` node.
    Rows are read in id order, so every backend builds the same graph (node and edge
    order included, which decides which of two same-keyed edges stays).
    """
    graph = nx.MultiDiGraph()
    titles = _entity_titles(session)
    for entity_id, title, dab in session.execute(select(Entity.entity_id, Entity.title, Entity.is_disambiguation)
                                                      .order_by(Entity.entity_id)):
        graph.add_node(title, kind="entity", entity_id=entity_id, aliases=[], is_disambiguation=dab)
    for entity_id, alias in session.execute(select(Alias.entity_id, Alias.alias).order_by(Alias.id)):
        if entity_id in titles and alias != titles[entity_id]:
            graph.nodes[titles[entity_id]]["aliases"].append(alias)
    redirects = _redirects(session, set(titles.values()))
    kinds = [Triple.kind != "links_to"] if not links else []
    for subject, obj, attrs in _edges(session, titles, redirects, *kinds):
        if obj not in graph:
            graph.add_node(obj, kind=object_kind(attrs["kind"], attrs["object_is_title"]))
        del attrs["object_is_title"]
        graph.add_edge(subject, obj, key=attrs["predicate"], **attrs)
    return graph


def object_kind(triple_kind: str, names_a_page: bool) -> str:
    """The node an edge's object becomes when it is not an ingested article."""
    if not names_a_page:
        return "literal"
    return "category" if triple_kind == "in_category" else "missing"


def graph_lines(session: Session) -> Iterator[dict]:
    """The whole graph, page links included, as JSON-ready records streamed from SQL.

    Entity nodes (with their aliases) come first, in id order; then every triple as an edge
    in id order, its object's node just before the first edge that reaches it. The records
    are ``build_graph(links=True)``'s nodes and edges, without holding the graph.
    """
    titles = _entity_titles(session)
    aliases = session.execute(select(Alias.entity_id, Alias.alias).order_by(Alias.entity_id, Alias.id))
    pending = next(aliases, None)
    for entity_id, title, dab in session.execute(select(Entity.entity_id, Entity.title, Entity.is_disambiguation)
                                                      .order_by(Entity.entity_id)):
        names = []
        while pending is not None and pending[0] <= entity_id:
            if pending[0] == entity_id and pending[1] != title:
                names.append(pending[1])
            pending = next(aliases, None)
        yield {"type": "node", "id": title, "kind": "entity", "entity_id": entity_id, "aliases": names,
               "is_disambiguation": dab}
    known = set(titles.values())
    seen: set[str] = set()
    for subject, obj, attrs in _edges(session, titles, _redirects(session, known)):
        if obj not in known and obj not in seen:
            seen.add(obj)
            yield {"type": "node", "id": obj, "kind": object_kind(attrs["kind"], attrs["object_is_title"])}
        del attrs["object_is_title"]
        yield {"type": "edge", "subject": subject, "object": obj, **attrs}


def _entity_titles(session: Session) -> dict[int, str]:
    return {entity_id: title for entity_id, title in session.execute(select(Entity.entity_id, Entity.title)
                                                                     .order_by(Entity.entity_id))}


def _redirects(session: Session, known: set[str]) -> dict[str, str]:
    """Redirect title -> target, for targets that are ingested articles."""
    return {title: target for title, target in session.execute(select(Redirect.title, Redirect.target)
                                                                     .order_by(Redirect.page_id))
            if target in known}


def _edges(session: Session, titles: dict[int, str], redirects: dict[str, str], *where) -> Iterator[tuple[str, str, dict]]:
    """The triples as edges, objects resolved through redirects; rows streamed in id order.

    Every row comes back with new string and int objects; the repeated ones (kinds,
    predicates, fields, object names, page and revision ids) are shared instead, which
    took a 100k-page graph (567k edges) from 626 to 495 MB and its build from 11.4 to 7.9 s.
    """
    rows = session.execute(select(Triple.id, Triple.subject_id, Triple.predicate, Triple.object_title,
                                  Triple.object_literal, Triple.kind, Triple.page_id, Triple.rev_id,
                                  Triple.field, Triple.passage_id).where(*where).order_by(Triple.id)
                           .execution_options(yield_per=10_000))
    numbers: dict[int, int] = {}
    for tid, subject_id, predicate, obj_title, literal, kind, page_id, rev_id, field, passage in rows:
        subject = titles.get(subject_id)
        if subject is None:
            continue
        obj = redirects.get(obj_title, obj_title) if obj_title else literal
        yield subject, sys.intern(obj), dict(
            predicate=sys.intern(predicate), kind=sys.intern(kind), triple_id=tid,
            page_id=numbers.setdefault(page_id, page_id), rev_id=numbers.setdefault(rev_id, rev_id),
            field=sys.intern(field), passage_id=passage, object_is_title=bool(obj_title))


def save_graph(graph: nx.MultiDiGraph, stamp: tuple, path: Path) -> None:
    """Pickle atomically (temp file + rename) so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            pickle.dump({"stamp": stamp, "graph": graph}, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        index_files.stamp(path.parent, [path])
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rebuild_graph(settings: Settings, session: Session) -> nx.MultiDiGraph:
    graph = build_graph(session)
    save_graph(graph, sql_stamp(session), settings.graph_path)
    return graph


def _read_snapshot(path: Path) -> dict | None:
    """The pickled snapshot, checked against its stamp first (kg/index_files.py): a damaged one is logged and None
    (rebuilt), and bytes that differ from what kgqa wrote are never unpickled."""
    if not path.is_file():
        return None
    try:
        snapshot = pickle.loads(index_files.read_checked(path.parent, path) or path.read_bytes())
        return snapshot if isinstance(snapshot, dict) else None
    except (index_files.DamagedIndexFile, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError) as exc:
        log.warning("%s; rebuilding the graph from the SQL store", exc)
        return None


def load_graph(settings: Settings) -> nx.MultiDiGraph:
    """The persisted graph; rebuilt from SQL (and re-saved) when missing or stale."""
    engine = open_knowledge_base(settings)
    try:
        with session_factory(engine)() as session:
            stamp = sql_stamp(session)
            snapshot = _read_snapshot(settings.graph_path)
            if snapshot is not None and snapshot.get("stamp") == stamp:
                return snapshot["graph"]
            return rebuild_graph(settings, session)
    finally:
        engine.dispose()
