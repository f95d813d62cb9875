"""The article link graph as compressed sparse row arrays, memory-mapped so server processes share one copy.

Nodes are the ingested entities, numbered in title order; an undirected edge
joins two of them when either article links to the other, weighted by how many of
the two directions link (1 or 2). A link's target is resolved through a redirect as
the NetworkX graph resolves it (kg/graph.py), and links to pages that were not
ingested are left out, since they have no passages.

The arrays are built straight from SQL, streaming the ``links_to`` triples in
chunks (never all of them as Python objects at once), and saved under
``index/links/`` as ``.npy`` files next to a JSON stamp of the SQL state they were
built from. ``np.load(..., mmap_mode="r")`` maps them, so every process reading
one knowledge base shares one copy through the page cache; a missing or stale
folder is rebuilt in a temporary folder and swapped in under a file lock.
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from kg.mapped_arrays import load_current, open_arrays, save_arrays
from kg.store import Entity, Redirect, Triple
from kgqa.settings import Settings

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: nodes in title order
CHUNK_ROWS = 200_000  # link rows read from SQL per chunk
ARRAYS = ("ids", "indptr", "indices", "weights", "title_bytes", "title_offsets")
HUB_ROW = 4096  # longer rows are binary-searched by ``adjacency`` rather than read whole


@dataclass(frozen=True, eq=False)
class LinkGraph:
    """The undirected entity link graph in CSR form, nodes numbered in title order.

    Node ``i`` is the entity ``ids[i]``, the ``i``-th title in Python's string order, so
    a title is found by binary search and ascending nodes are alphabetical titles. Its
    neighbours are ``indices[indptr[i]:indptr[i+1]]`` (ascending) with the weights beside
    them; the titles are UTF-8 bytes, node after node, cut at ``title_offsets``.
    """

    ids: np.ndarray  # int64 entity id of each node
    indptr: np.ndarray  # int32 (int64 past 2**31 entries), like indices
    indices: np.ndarray
    weights: np.ndarray  # uint8: 1 = a link one way, 2 = links both ways
    title_bytes: np.ndarray  # uint8
    title_offsets: np.ndarray  # int64, one more than there are nodes

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def edge_count(self) -> int:
        return len(self.indices) // 2

    def title(self, node: int) -> str:
        start, end = self.title_offsets[node], self.title_offsets[node + 1]
        return self.title_bytes[start:end].tobytes().decode("utf-8")

    def node(self, title: str) -> int | None:
        """The node of the entity titled ``title`` (binary search over the titles), or None."""
        at = bisect.bisect_left(range(len(self)), title, key=self.title)
        return at if at < len(self) and self.title(at) == title else None

    def __contains__(self, title: str) -> bool:
        return self.node(title) is not None

    def neighbours(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        """(neighbour nodes ascending, that is by title; link weights) of ``node``."""
        start, end = self.indptr[node], self.indptr[node + 1]
        return self.indices[start:end], self.weights[start:end]

    def degrees(self) -> np.ndarray:
        """Distinct linked entities per node (the unweighted degree)."""
        return np.diff(self.indptr)

    def adjacency(self, nodes: np.ndarray) -> sp.csr_array:
        """The float weight matrix of the subgraph induced by ``nodes`` (ascending), in their order.

        Rows up to ``HUB_ROW`` links are read whole, in one gather; a longer row (a hub
        with up to millions of links) is binary-searched for the nodes instead, so the
        cost follows the number of nodes, never the size of the graph.
        """
        m = len(nodes)
        starts, ends = self.indptr[nodes].astype(np.int64), self.indptr[nodes + 1].astype(np.int64)
        lengths = ends - starts
        short = np.flatnonzero(lengths <= HUB_ROW)
        # positions of every link of the short rows: each row's start, then counting up
        offsets = np.cumsum(lengths[short]) - lengths[short]
        positions = np.repeat(starts[short] - offsets, lengths[short]) + np.arange(lengths[short].sum())
        rows = [np.repeat(short, lengths[short])]
        columns, weights = [self.indices[positions]], [self.weights[positions]]
        for row in np.flatnonzero(lengths > HUB_ROW).tolist():
            neighbours, link_weights = self.neighbours(int(nodes[row]))
            at = np.minimum(np.searchsorted(neighbours, nodes), len(neighbours) - 1)
            linked = np.flatnonzero(neighbours[at] == nodes)
            rows.append(np.full(len(linked), row))
            columns.append(nodes[linked])
            weights.append(link_weights[at[linked]])
        rows, columns, weights = np.concatenate(rows), np.concatenate(columns), np.concatenate(weights)
        at = np.minimum(np.searchsorted(nodes, columns), max(m - 1, 0))
        inside = nodes[at] == columns if m else np.zeros(0, bool)
        return sp.csr_array((weights[inside].astype(np.float64), (rows[inside], at[inside])), shape=(m, m))


# --- building from SQL -------------------------------------------------------------------------------------------


def link_stamp(session: Session) -> dict:
    """The SQL state the link graph depends on: entities, triples and redirects (counts and largest ids)."""
    def count_and_max(column) -> list:
        return list(session.execute(select(func.count(), func.max(column))).one())

    return {"format": FORMAT_VERSION, "entities": count_and_max(Entity.entity_id),
            "triples": count_and_max(Triple.id), "redirects": count_and_max(Redirect.page_id)}


def build_link_graph(session: Session, *, chunk_rows: int = CHUNK_ROWS) -> LinkGraph:
    """The link graph of the store, in memory (``load_link_graph`` saves and maps it)."""
    entity_ids, titles = _entities(session, chunk_rows)  # by entity id
    n = len(entity_ids)
    by_title = np.argsort(np.array(titles, dtype=object), kind="stable")  # entity positions in node order
    node_of = np.empty(n, dtype=np.int64)
    node_of[by_title] = np.arange(n)
    pairs = _DirectedPairs(n)
    for subjects, objects in _link_chunks(session, chunk_rows):
        source, source_found = _positions_of(entity_ids, subjects)
        target, target_found = _positions_of(entity_ids, objects)
        keep = source_found & target_found & (source != target)
        pairs.add(node_of[source[keep]], node_of[target[keep]])
    source, target = pairs.result()
    directed = sp.csr_array((np.ones(len(source), np.uint8), (source, target)), shape=(n, n))
    undirected = (directed + directed.T).tocsr()  # a link either way relates the two; both ways weigh 2
    undirected.sum_duplicates()
    index_type = np.int32 if max(undirected.nnz, n) < 2**31 else np.int64  # one dtype: SciPy would copy to unify
    encoded = [titles[at].encode("utf-8") for at in by_title.tolist()]
    return LinkGraph(
        ids=entity_ids[by_title],
        indptr=undirected.indptr.astype(index_type),
        indices=undirected.indices.astype(index_type),
        weights=undirected.data.astype(np.uint8),
        title_bytes=np.frombuffer(b"".join(encoded), dtype=np.uint8),
        title_offsets=np.concatenate([[0], np.cumsum([len(t) for t in encoded], dtype=np.int64)]).astype(np.int64),
    )


def _entities(session: Session, chunk_rows: int) -> tuple[np.ndarray, list[str]]:
    """(entity ids ascending, their titles)."""
    ids: list[int] = []
    titles: list[str] = []
    statement = (select(Entity.entity_id, Entity.title).order_by(Entity.entity_id)
                 .execution_options(yield_per=chunk_rows))
    for entity_id, title in session.connection().execute(statement):
        ids.append(entity_id)
        titles.append(title)
    return np.array(ids, dtype=np.int64), titles


def _link_chunks(session: Session, chunk_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(subject entity ids, object entity ids or -1) of the ``links_to`` triples, ``chunk_rows`` at a time.

    The object is the redirect's target when the title is a redirect to an ingested
    entity, else the entity with that title (-1 when there is none), as in kg/graph.py.
    """
    via_redirect, direct = aliased(Entity), aliased(Entity)
    statement = (
        select(Triple.subject_id, func.coalesce(via_redirect.entity_id, direct.entity_id, -1))
        .select_from(Triple)
        .outerjoin(Redirect, Redirect.title == Triple.object_title)
        .outerjoin(via_redirect, via_redirect.title == Redirect.target)
        .outerjoin(direct, direct.title == Triple.object_title)
        .where(Triple.kind == "links_to")
        .execution_options(yield_per=chunk_rows)  # streamed: a server-side cursor where the database has them
    )
    for rows in session.connection().execute(statement).partitions():  # Core rows: the ORM would double the cost
        flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=2 * len(rows)).reshape(-1, 2)
        yield flat[:, 0], flat[:, 1]


def _positions_of(ids: np.ndarray, entity_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position of each entity id in the ascending ``ids``, whether it is there) by binary search."""
    if len(ids) == 0:
        return np.zeros(len(entity_ids), np.int64), np.zeros(len(entity_ids), bool)
    at = np.minimum(np.searchsorted(ids, entity_ids), len(ids) - 1)
    return at, ids[at] == entity_ids


class _DirectedPairs:
    """The distinct (source, target) node pairs seen, as sorted int64 keys ``source * n + target``.

    Chunks are deduplicated on arrival and folded into the sorted set once they outgrow
    it, so memory follows the distinct pairs and each key is merged O(log) times (a
    stable sort merges the sorted runs; ``np.unique`` hashes, far slower on such keys).
    """

    def __init__(self, n: int, min_fold: int = 1 << 20):
        self.n = n
        self.min_fold = min_fold
        self.folded = np.zeros(0, dtype=np.int64)
        self.pending: list[np.ndarray] = []
        self.pending_size = 0

    def add(self, source: np.ndarray, target: np.ndarray) -> None:
        keys = _distinct(np.sort(source.astype(np.int64) * self.n + target))
        self.pending.append(keys)
        self.pending_size += len(keys)
        if self.pending_size >= max(len(self.folded), self.min_fold):
            self._fold()

    def _fold(self) -> None:
        self.folded = _distinct(np.sort(np.concatenate([self.folded, *self.pending]), kind="stable"))
        self.pending, self.pending_size = [], 0

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        self._fold()
        return np.divmod(self.folded, max(self.n, 1))


def _distinct(ordered: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array."""
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))] if len(ordered) else ordered


# --- saving, mapping, loading ------------------------------------------------------------------------------------


def link_graph_dir(settings: Settings) -> Path:
    return settings.index_dir / "links"


def save_link_graph(graph: LinkGraph, stamp: dict, folder: Path) -> None:
    """Write the arrays and the stamp into a temporary folder beside ``folder``, then swap it in (under the lock)."""
    save_arrays({name: getattr(graph, name) for name in ARRAYS}, stamp, folder)


def open_link_graph(folder: Path) -> LinkGraph:
    """The saved arrays of ``folder``, checked against their stamps, read-only: read into memory, or memory-mapped
    when large (plain ndarray views: expansion slices rows by the hundred)."""
    graph = LinkGraph(**open_arrays(folder, ARRAYS))
    n = len(graph.ids)
    if not (len(graph.indptr) == len(graph.title_offsets) == n + 1
            and len(graph.indices) == len(graph.weights) == (graph.indptr[-1] if n else 0)
            and len(graph.title_bytes) == graph.title_offsets[-1]):
        raise ValueError(f"link graph arrays in {folder} do not fit together")
    return graph


def load_link_graph(settings: Settings, session: Session) -> LinkGraph:
    """The saved link graph (see ``open_link_graph``); rebuilt from SQL (and saved) when missing, stale or damaged.

    When the index folder cannot be written, the graph is built in memory for this process only.
    """
    folder = link_graph_dir(settings)
    stamp = link_stamp(session)
    try:
        return load_current(folder, stamp, open_link_graph,
                            lambda: save_link_graph(build_link_graph(session), stamp, folder), "the link graph")
    except OSError as exc:
        log.warning("link graph folder %s unusable (%s); building the graph in memory", folder, exc)
        return build_link_graph(session)

