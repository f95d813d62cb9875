"""BM25 over every passage, and the passage catalog, built from SQL once and memory-mapped by every process.

Each passage is indexed as "title section text", tokenized by ``kgqa.text`` (the
words a query is tokenized into at search time). Both are saved under ``index/bm25/``
as ``.npy`` files beside a stamp of the SQL state they came from (kg/mapped_arrays.py),
and built at the end of an ingest or at load when missing or stale.

- The BM25 score matrix is in bm25s's own form and file names (CSC over the vocabulary:
  ``data``, ``indices``, ``indptr``; ``bm25s.BM25.load_scores(folder, mmap=True)``
  reads them), with bm25s's Lucene scoring, so it ranks as ``bm25s.BM25.index`` would.
  The vocabulary is saved as sorted UTF-8 bytes rather than bm25s's JSON dict: a
  dict of millions of words would be parsed into every process.
- The catalog is what ranking needs about a passage, by position (passages in page,
  then ordinal order; a position is a document of the score matrix): passage id,
  vector id, page id and ordinal, with the orders to find a position by passage id
  or vector id and a page by its title.

The build streams passages from SQL in chunks: the (passage, word, count) triples of
each chunk are spilled to disk, then scattered into the score matrix, which is
written in place (memory-mapped); memory grows with the vocabulary and the catalog,
not with the text.
"""

from __future__ import annotations

import itertools
import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kg.mapped_arrays import load_current, open_arrays, replacing
from kg.store import Passage
from kgqa.settings import Settings
from kgqa.text import ContentWordCoder

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # raise it whenever kgqa.text tokenizes differently: the stamp then calls for a rebuild
CHUNK_ROWS = 20_000  # passages read from SQL per chunk
K1, B = 1.2, 0.75  # BM25 parameters, as retrieval/sparse.py's in-memory index
EMPTY = "<empty>"  # the one word of a passage without content words (no query ever has it)
SCORES = ("data.csc.index", "indices.csc.index", "indptr.csc.index")  # bm25s's names for its score arrays
ARRAYS = ("vector_ids", "page_ids", "ordinals", "id_bytes", "id_offsets", "id_order", "vector_order",
          "title_bytes", "title_offsets", "title_pages", "vocab_bytes", "vocab_offsets", *SCORES)
_SPILL = ("pair_docs.bin", "pair_words.bin", "pair_counts.bin")


@dataclass(frozen=True, eq=False)
class SparseArrays:
    """The saved arrays, memory-mapped; positions are passages in (page id, ordinal) order."""

    vector_ids: np.ndarray  # int64, by position
    page_ids: np.ndarray  # int64, by position (ascending)
    ordinals: np.ndarray  # int32, by position
    id_bytes: np.ndarray  # uint8: passage ids as UTF-8, position after position, cut at id_offsets
    id_offsets: np.ndarray  # int64, one more than there are passages
    id_order: np.ndarray  # int64: positions in passage id order
    vector_order: np.ndarray  # int64: positions in vector id order
    title_bytes: np.ndarray  # uint8: page titles in title order, cut at title_offsets
    title_offsets: np.ndarray  # int64
    title_pages: np.ndarray  # int64: the page of each title
    vocab_bytes: np.ndarray  # uint8: the indexed words in sorted order (word i is column i), cut at vocab_offsets
    vocab_offsets: np.ndarray  # int64
    scores: dict  # bm25s's score arrays: data (float32), indices (int32 positions), indptr (int64), num_docs

    def __len__(self) -> int:
        return len(self.vector_ids)

    @classmethod
    def empty(cls) -> "SparseArrays":
        """The arrays of a knowledge base without passages."""
        none, strings, offsets = np.zeros(0, np.int64), np.zeros(0, np.uint8), np.zeros(1, np.int64)
        return cls(vector_ids=none, page_ids=none, ordinals=none.astype(np.int32), id_bytes=strings,
                   id_offsets=offsets, id_order=none, vector_order=none, title_bytes=strings, title_offsets=offsets,
                   title_pages=none, vocab_bytes=strings, vocab_offsets=offsets,
                   scores={"data": np.zeros(0, np.float32), "indices": np.zeros(0, np.int32), "indptr": offsets,
                           "num_docs": 0})


def sparse_dir(settings: Settings) -> Path:
    return settings.index_dir / "bm25"


def sparse_stamp(session: Session) -> dict:
    """The SQL state the index depends on: passages (count, largest and sum of vector ids).

    A rewritten page gets new vector ids, so any change of passages changes the stamp.
    """
    count, top, total = session.execute(
        select(func.count(), func.max(Passage.vector_id), func.sum(Passage.vector_id))).one()
    return {"format": FORMAT_VERSION, "k1": K1, "b": B,
            "passages": [int(count), None if top is None else int(top), None if total is None else int(total)]}


def load_sparse_index(settings: Settings, session: Session) -> SparseArrays:
    """The saved BM25 index and catalog, checked and read or memory-mapped (kg/mapped_arrays.py); rebuilt from SQL
    (and saved) when missing, stale or damaged.

    When the index folder cannot be written, they are built in a temporary folder for this process only.
    """
    folder = sparse_dir(settings)
    stamp = sparse_stamp(session)

    def build() -> None:
        with replacing(folder, stamp) as building:
            build_sparse_index(session, building)

    try:
        return load_current(folder, stamp, open_sparse_index, build, "the BM25 index")
    except OSError as exc:
        log.warning("BM25 folder %s unusable (%s); building the index for this process", folder, exc)
        private = Path(tempfile.mkdtemp(prefix="kgqa-bm25-"))
        try:
            build_sparse_index(session, private)
            return open_sparse_index(private, checked=False)  # the arrays (or mappings) outlive the files
        finally:
            shutil.rmtree(private, ignore_errors=True)


def open_sparse_index(folder: Path, *, checked: bool = True) -> SparseArrays:
    """The saved arrays of ``folder``, each checked against its stamp (``checked``); see ``open_arrays``."""
    arrays = open_arrays(folder, ARRAYS, checked=checked)
    scores = {"data": arrays.pop(SCORES[0]), "indices": arrays.pop(SCORES[1]), "indptr": arrays.pop(SCORES[2]),
              "num_docs": len(arrays["vector_ids"])}
    index = SparseArrays(**arrays, scores=scores)
    n = len(index)
    if not (len(index.page_ids) == len(index.ordinals) == len(index.id_order) == len(index.vector_order) == n
            and len(index.id_offsets) == n + 1 and index.id_offsets[-1] == len(index.id_bytes)
            and len(index.title_offsets) == len(index.title_pages) + 1
            and len(scores["indptr"]) == len(index.vocab_offsets)
            and len(scores["data"]) == len(scores["indices"]) == scores["indptr"][-1]):
        raise ValueError(f"BM25 arrays in {folder} do not fit together")
    return index


def build_sparse_index(session: Session, folder: Path, *, chunk_rows: int = CHUNK_ROWS,
                       k1: float = K1, b: float = B) -> dict:
    """Write the BM25 index and catalog of every passage into ``folder``; returns what it did (counts, seconds)."""
    started = time.monotonic()
    coder = ContentWordCoder()
    columns: dict[str, list] = {"vector_ids": [], "page_ids": [], "ordinals": [], "lengths": []}
    ids: list[bytes] = []
    titles: list[bytes] = []
    title_pages: list[int] = []
    frequencies = np.zeros(0, dtype=np.int64)  # documents holding each word, by first-seen id
    spill = [open(folder / name, "wb") for name in _SPILL]
    spilled: list[int] = []
    tokens = 0
    try:
        for rows in _passage_chunks(session, chunk_rows):
            first = len(ids)
            words: list[list[int]] = []
            for pid, vector_id, page_id, ordinal, title, section, text in rows:
                ids.append(pid.encode("utf-8"))
                if not title_pages or title_pages[-1] != page_id:
                    titles.append(title.encode("utf-8"))
                    title_pages.append(page_id)
                words.append(coder.encode(f"{title} {section or ''} {text}") or [coder.id(EMPTY)])
            columns["vector_ids"].append(np.fromiter((r[1] for r in rows), np.int64, len(rows)))
            columns["page_ids"].append(np.fromiter((r[2] for r in rows), np.int64, len(rows)))
            columns["ordinals"].append(np.fromiter((r[3] for r in rows), np.int32, len(rows)))
            lengths = np.fromiter(map(len, words), np.int64, len(words))
            columns["lengths"].append(lengths)
            tokens += int(lengths.sum())
            flat = np.fromiter(itertools.chain.from_iterable(words), np.int64, int(lengths.sum()))
            keys = np.repeat(np.arange(first, len(ids), dtype=np.int64), lengths) << 32 | flat
            pairs, counts = np.unique(keys, return_counts=True)  # (passage, word) in passage, then word order
            pair_words = (pairs & 0xFFFFFFFF).astype(np.int32)
            (pairs >> 32).astype(np.int32).tofile(spill[0])
            pair_words.tofile(spill[1])
            counts.astype(np.float32).tofile(spill[2])
            spilled.append(len(pairs))
            frequencies = np.concatenate([frequencies, np.zeros(len(coder.vocab) - len(frequencies), np.int64)])
            frequencies += np.bincount(pair_words, minlength=len(coder.vocab))
    finally:
        for handle in spill:
            handle.close()
    tokenized = time.monotonic()
    catalog = {name: np.concatenate(parts) if parts else np.zeros(0, np.int64) for name, parts in columns.items()}
    _write_catalog(folder, catalog, ids, titles, title_pages)
    _write_scores(folder, coder.vocab, frequencies, catalog["lengths"], spilled, k1, b)
    for name in _SPILL:
        (folder / name).unlink()
    stats = {"passages": len(ids), "tokens": tokens, "words": len(coder.vocab), "pairs": int(sum(spilled)),
             "tokenize_s": round(tokenized - started, 3), "total_s": round(time.monotonic() - started, 3)}
    log.info("BM25 index built: %s", stats)
    return stats


def _passage_chunks(session: Session, chunk_rows: int):
    statement = (select(Passage.id, Passage.vector_id, Passage.page_id, Passage.ordinal, Passage.title,
                        Passage.section, Passage.text)
                 .order_by(Passage.page_id, Passage.ordinal)
                 .execution_options(yield_per=chunk_rows))  # streamed: a server-side cursor where there is one
    yield from session.connection().execute(statement).partitions()  # Core rows: the ORM would double the cost


def _packed(strings: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(the bytes one after another, the offsets cutting them: one more than there are strings)."""
    offsets = np.zeros(len(strings) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in strings], out=offsets[1:])
    return np.frombuffer(b"".join(strings), dtype=np.uint8), offsets


def _byte_order(strings: list[bytes]) -> np.ndarray:
    """Positions of ``strings`` in sorted order (UTF-8 byte order is Python's string order), ties in place."""
    if not strings:
        return np.zeros(0, dtype=np.int64)
    return np.argsort(np.array(strings, dtype=bytes), kind="stable").astype(np.int64)


def _write_catalog(folder: Path, catalog: dict, ids: list[bytes], titles: list[bytes], pages: list[int]) -> None:
    id_bytes, id_offsets = _packed(ids)
    by_title = _byte_order(titles)
    title_bytes, title_offsets = _packed([titles[at] for at in by_title.tolist()])
    arrays = {
        "vector_ids": catalog["vector_ids"].astype(np.int64), "page_ids": catalog["page_ids"].astype(np.int64),
        "ordinals": catalog["ordinals"].astype(np.int32), "id_bytes": id_bytes, "id_offsets": id_offsets,
        "id_order": _byte_order(ids), "vector_order": np.argsort(catalog["vector_ids"], kind="stable").astype(np.int64),
        "title_bytes": title_bytes, "title_offsets": title_offsets,
        "title_pages": np.array(pages, dtype=np.int64)[by_title],
    }
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)


def _write_scores(folder: Path, vocab: dict[str, int], frequencies: np.ndarray, lengths: np.ndarray,
                  spilled: list[int], k1: float, b: float) -> None:
    """The CSC score matrix over the sorted vocabulary, scattered in place from the spilled pairs.

    Scores are bm25s's Lucene BM25, computed as it computes them (float64, stored as float32).
    """
    words = list(vocab)  # by id
    order = sorted(range(len(words)), key=words.__getitem__)
    column = np.empty(len(words), dtype=np.int64)
    column[order] = np.arange(len(words))
    vocab_bytes, vocab_offsets = _packed([words[at].encode("utf-8") for at in order])
    np.save(folder / "vocab_bytes.npy", vocab_bytes)
    np.save(folder / "vocab_offsets.npy", vocab_offsets)
    df = frequencies[order]
    indptr = np.zeros(len(words) + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    np.save(folder / f"{SCORES[2]}.npy", indptr)
    nnz = int(indptr[-1])
    data = np.lib.format.open_memmap(folder / f"{SCORES[0]}.npy", mode="w+", dtype=np.float32, shape=(nnz,))
    indices = np.lib.format.open_memmap(folder / f"{SCORES[1]}.npy", mode="w+", dtype=np.int32, shape=(nnz,))
    n = len(lengths)
    if nnz:
        average = lengths.mean()  # float64, as bm25s averages
        idf = np.array([math.log(1 + (n - f + 0.5) / (f + 0.5)) for f in df.tolist()],
                       dtype=np.float32)  # bm25s's Lucene idf, kept as float32 as it keeps it
        cursor = indptr[:-1].copy()
        with open(folder / _SPILL[0], "rb") as docs_in, open(folder / _SPILL[1], "rb") as words_in, \
                open(folder / _SPILL[2], "rb") as counts_in:
            for size in spilled:
                docs = np.fromfile(docs_in, dtype=np.int32, count=size)
                cols = column[np.fromfile(words_in, dtype=np.int32, count=size)]
                tf = np.fromfile(counts_in, dtype=np.float32, count=size).astype(np.float64)
                tfc = tf / (k1 * ((1 - b) + b * lengths[docs] / average) + tf)
                values = (idf[cols] * tfc).astype(np.float32)
                by_column = np.argsort(cols, kind="stable")  # passages stay ascending within a column
                cols, docs, values = cols[by_column], docs[by_column], values[by_column]
                starts = np.flatnonzero(np.concatenate(([True], cols[1:] != cols[:-1])))
                run = np.diff(np.append(starts, len(cols)))
                at = cursor[cols] + np.arange(len(cols)) - np.repeat(starts, run)
                data[at] = values
                indices[at] = docs
                cursor[cols[starts]] += run
    data.flush()
    indices.flush()
    del data, indices
