"""A knowledge base with Wikipedia's shape at 100k or 1M pages: build, disk, load, memory and query latency.

    python bench/scale.py --pages 100000 [--out DIR] [--queries 200] [--keep]

Pages are made, not parsed (wikitext parsing is measured on real pages by
``bench/ingest.py``), and fed to the ingest pipeline's own writer, vector protocol
and finish (``kg.ingest.ingest_parsed``), so SQL writes, the FAISS index, the link
graph and the sparse index are built exactly as for a dump. Each page has:

- a title made of two or three capitalised words of the sample (a disambiguator on a
  collision, as Wikipedia does), and about one redirect per article (Wikipedia has
  ~11M redirects for 6.9M articles; we make one each);
- 1 + Poisson(1.9) passages (about 20M passages for 6.9M articles), each 3-7 real
  consecutive sentences of the sample dump;
- 25 links whose targets follow a power law (a few pages draw most links, as on
  Wikipedia), each placed in one of its passages; 3 categories from a pool of one per
  25 pages; an infobox of 8 facts on one page in three, half of them links.

Embedding is measured on its own (``bench/embed.py``), so a named stand-in replaces
MiniLM here: the signed hashed word counts of a text (2**16 buckets) times a fixed
random 384-column matrix, normalised (``HashedProjection``): fast, deterministic, not
semantic, with the structure of real vectors (texts that share words are near).

Stages reported: build (pages/s, seconds per stage, peak RSS), disk per component,
knowledge-base load in a fresh process (seconds, RSS, and what a second process adds
while the first holds the same files), and retrieval p50/p95 for dense, sparse,
hybrid and graph modes. Writes bench/results/scale-<pages>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = Path(__file__).resolve().parent / "results"
DIM = 384
BUCKETS = 1 << 16
LINKS_PER_PAGE = 25
CATEGORIES_PER_PAGE = 3
PAGES_PER_CATEGORY = 25
FACTS_PER_INFOBOX = 8
MODES = ("dense", "sparse", "hybrid", "graph")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"(])")


class HashedProjection:
    """The stand-in embedder: signed hashed word counts times a fixed Gaussian matrix, L2-normalised.

    scikit-learn's ``HashingVectorizer`` does the hashing (MurmurHash3, signed), a
    stateless transform that needs no vocabulary and runs at tens of thousands of texts/s.
    """

    batch_size = 512  # texts per call: the hasher's per-call overhead is paid once per 512

    def __init__(self, dim: int = DIM, buckets: int = BUCKETS, seed: int = 0) -> None:
        import hashlib

        from sklearn.feature_extraction.text import HashingVectorizer

        from models.embedding.identity import EmbedderIdentity

        self.dim = dim
        self.projection = np.random.default_rng(seed).standard_normal((buckets, dim), dtype=np.float32)
        self.hasher = HashingVectorizer(n_features=buckets, alternate_sign=True, norm=None, dtype=np.float32)
        self.seconds = 0.0  # spent embedding: the build's SQL and index time is the rest of its write stage
        name = f"stand-in: hashed word counts x random projection ({buckets} buckets, seed {seed})"
        self.identity = EmbedderIdentity(name=name, dim=dim, fingerprint=hashlib.sha256(name.encode()).hexdigest())

    def warm_up(self) -> None:
        pass

    def encode_documents(self, texts) -> np.ndarray:
        started = time.perf_counter()
        vectors = np.asarray(self.hasher.transform(list(texts)) @ self.projection, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.seconds += time.perf_counter() - started
        return vectors / np.where(norms > 0, norms, 1.0)

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode_documents([text])[0]


# -- the synthetic knowledge base ---------------------------------------------------------------
def sample_sentences() -> list[str]:
    """The sentences of the sample dump's passages, in reading order."""
    from kg.dump_reader import iter_pages
    from kg.page_parser import is_list_page, parse_page
    from kgqa import assets
    from kgqa.settings import Settings

    sentences = []
    for raw in iter_pages(assets.sample_dump_path(Settings())):
        if raw.ns == 0 and raw.redirect is None and not is_list_page(raw.title):
            for draft in parse_page(raw).passages:
                sentences += [s for s in _SENTENCE_END.split(draft.text) if len(s.split()) >= 4]
    return sentences


class SyntheticWiki:
    """Deterministic pages with Wikipedia's shape; ``pages()`` yields them as the parser would."""

    def __init__(self, pages: int, sentences: list[str], seed: int = 0) -> None:
        self.n = pages
        self.sentences = sentences
        self.rng = np.random.default_rng(seed)
        words = sorted({w for s in sentences for w in _WORD.findall(s) if w[:1].isupper() and len(w) > 2})
        self.titles = self._titles(words)
        self.categories = [f"{words[i % len(words)]} {words[(i * 7 + 3) % len(words)]} topics"
                           for i in range(max(1, pages // PAGES_PER_CATEGORY))]

    def _titles(self, words: list[str]) -> list[str]:
        picks = self.rng.integers(0, len(words), size=(self.n, 3))
        three = self.rng.random(self.n) < 0.3
        seen: set[str] = set()
        titles = []
        for i in range(self.n):
            a, b, c = (words[j] for j in picks[i])
            title = f"{a} {b} {c}" if three[i] else f"{a} {b}"
            if title in seen:
                title = f"{title} ({c.lower()})"
            if title in seen:
                title = f"{title} {i}"
            seen.add(title)
            titles.append(title)
        return titles

    def link_targets(self, count: int) -> np.ndarray:
        """Pages by a power law of rank: page 0 draws the most links."""
        return np.minimum((self.n * self.rng.random(count) ** 3).astype(np.int64), self.n - 1)

    def pages(self):
        from kg.infobox import InfoboxFact
        from kg.page_parser import ParsedPage
        from kg.parse_pool import RedirectItem
        from kg.passages import PassageDraft

        rng, n_sentences = self.rng, len(self.sentences)
        for i, title in enumerate(self.titles):
            page = ParsedPage(page_id=i + 1, title=title, rev_id=1, timestamp="2024-01-01T00:00:00Z",
                              is_disambiguation=False, aliases=[(title, "title")])
            count = 1 + int(rng.poisson(1.9))
            for ordinal in range(count):
                start, length = int(rng.integers(0, n_sentences)), int(rng.integers(3, 8))
                text = " ".join(self.sentences[(start + k) % n_sentences] for k in range(length))
                page.passages.append(PassageDraft(section_ordinal=min(ordinal, 1), ordinal=ordinal,
                                                  section="" if ordinal == 0 else "History", text=text))
            targets = self.link_targets(LINKS_PER_PAGE)
            for target, ordinal in zip(targets, rng.integers(0, count, size=LINKS_PER_PAGE)):
                if target != i:
                    page.links.setdefault(self.titles[target], int(ordinal))
            page.categories = [self.categories[j] for j in
                               rng.integers(0, len(self.categories), size=CATEGORIES_PER_PAGE)]
            if i % 3 == 0:
                for k, target in enumerate(self.link_targets(FACTS_PER_INFOBOX)):
                    linked = k % 2 == 0
                    page.facts.append(InfoboxFact(predicate=f"field_{k}", field=f"field {k}",
                                                  object_title=self.titles[target] if linked else None,
                                                  literal="" if linked else str(1800 + int(target) % 200)))
            yield page
            yield RedirectItem(page_id=self.n + i + 1, title=_redirect_title(title), target=title, rev_id=1)

    def sentence_queries(self, count: int) -> list[str]:
        """Sentences of the sample as queries: what a question's content words look like to the stand-in."""
        rng = np.random.default_rng(2)
        return [self.sentences[int(i)] for i in rng.integers(0, len(self.sentences), size=count)]

    def questions(self, count: int) -> list[str]:
        """Questions about random pages: their title, or a title and words of one of their sentences."""
        rng = np.random.default_rng(1)
        asked = []
        for i in rng.integers(0, self.n, size=count):
            words = self.sentences[int(rng.integers(0, len(self.sentences)))].split()[:6]
            asked.append(f"What is {self.titles[i]}?" if len(asked) % 2 else f"{' '.join(words)} {self.titles[i]}?")
        return asked


def _redirect_title(title: str) -> str:
    words = title.split(" (")[0].split()
    return " ".join(reversed(words)) + " (redirect)"


# -- measurements ----------------------------------------------------------------------------------
def disk_use(data_dir: Path) -> dict[str, float]:
    """MB on disk: the database (with its WAL), and each index folder or file."""
    def size(path: Path) -> float:
        if path.is_file():
            return path.stat().st_size / 2**20
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20 if path.exists() else 0.0

    sizes = {"sql": sum(size(p) for p in data_dir.glob("kgqa.db*"))}
    index = data_dir / "index"
    for entry in sorted(index.iterdir()) if index.is_dir() else []:
        if not entry.name.startswith("."):
            sizes[entry.name] = size(entry)
    sizes["total"] = sum(sizes.values())
    return sizes


def memory() -> dict[str, float]:
    """This process's RSS, PSS and private (unshared) memory, MB, from /proc/self/smaps_rollup."""
    fields = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0]) / 1024
    return {"rss_mb": fields["Rss"], "pss_mb": fields["Pss"],
            "private_mb": fields["Private_Clean"] + fields["Private_Dirty"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def probe(data_dir: Path, questions_file: Path | None) -> None:
    """In a fresh process: load the knowledge base, report time and memory, then (given questions) time retrieval.

    Prints one JSON line after loading, then waits for a line on stdin before querying,
    so a second process can load while this one holds the files.
    """
    from kgqa.settings import Settings
    from retrieval.knowledge_base import KnowledgeBase
    from retrieval.pipeline import RetrievalPipeline

    settings = Settings(data_dir=data_dir, models_dir=data_dir / "models")
    started = time.perf_counter()
    kb = KnowledgeBase(settings, embedder=HashedProjection())
    kb.warm_up()
    report = {"load_s": time.perf_counter() - started, **memory()}
    print(json.dumps(report), flush=True)
    if questions_file is None:
        sys.stdin.readline()
        return
    sys.stdin.readline()
    questions = json.loads(questions_file.read_text())
    pipeline = RetrievalPipeline(kb)
    latency = {}
    for mode in MODES:
        for question in questions[:20]:  # warm the page cache and the code paths
            pipeline.retrieve(question, k=10, mode=mode, with_facts=mode == "graph")
        times = []
        for question in questions:
            started = time.perf_counter()
            pipeline.retrieve(question, k=10, mode=mode, with_facts=mode == "graph")
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        latency[mode] = {"p50_ms": statistics.median(times), "p95_ms": times[int(0.95 * (len(times) - 1))]}
    print(json.dumps({"latency": latency, **memory()}), flush=True)


def measure_serving(data_dir: Path, questions_file: Path) -> dict:
    """Two server-like processes on one knowledge base: the first loads and later queries, the second loads meanwhile."""
    command = [sys.executable, str(Path(__file__).resolve()), "--probe", str(data_dir)]
    first = subprocess.Popen(command + ["--questions", str(questions_file)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        loaded = json.loads(first.stdout.readline())
        available_before = _mem_available_mb()
        second = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        second_loaded = json.loads(second.stdout.readline())
        available_after = _mem_available_mb()
        second.communicate("go\n", timeout=600)
        first.stdin.write("go\n")
        first.stdin.flush()
        queried = json.loads(first.stdout.readline())
    finally:
        first.kill()
    return {"first_process": loaded, "second_process": second_loaded,
            "second_process_adds_mb": available_before - available_after,
            "latency": queried["latency"], "first_process_after_queries": {k: v for k, v in queried.items()
                                                                            if k != "latency"}}


def dense_recall(data_dir: Path, questions: list[str], k: int = 10) -> dict:
    """recall@k of the saved (compressed past 20k vectors) index against exact search over the same passages.

    The exact side re-embeds every passage with the stand-in (it is deterministic, so these
    are the very vectors the index was given) and keeps each question's running top k.
    """
    from sqlalchemy import select

    from kg.store import Passage, make_engine, session_factory
    from kg.vector_index import VectorIndex
    from kgqa.settings import Settings
    from models.embedding.embedder import document_text

    settings = Settings(data_dir=data_dir, models_dir=data_dir / "models")
    embedder = HashedProjection()
    queries = embedder.encode_documents(questions)
    index = VectorIndex.load(settings.faiss_path, mmap=True)
    approx = index.search(queries, k)[1]
    best_scores = np.full((len(questions), k), -np.inf, dtype=np.float32)
    best_ids = np.full((len(questions), k), -1, dtype=np.int64)
    engine = make_engine(settings.database_url)
    started = time.perf_counter()
    with session_factory(engine)() as session:
        rows = session.execute(select(Passage.vector_id, Passage.title, Passage.section, Passage.text)
                               .execution_options(yield_per=20_000))
        for chunk in rows.partitions():
            vectors = embedder.encode_documents([document_text(t, s, x) for _, t, s, x in chunk])
            scores = queries @ vectors.T
            ids = np.broadcast_to(np.asarray([row[0] for row in chunk]), scores.shape)
            merged_scores = np.concatenate([best_scores, scores], axis=1)
            merged_ids = np.concatenate([best_ids, ids], axis=1)
            top = np.argpartition(-merged_scores, k - 1, axis=1)[:, :k]
            best_scores = np.take_along_axis(merged_scores, top, axis=1)
            best_ids = np.take_along_axis(merged_ids, top, axis=1)
    engine.dispose()
    recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(approx.tolist(), best_ids.tolist())]))
    return {"recall_at_10_vs_exact": recall, "index_kind": index.kind, "nlist": getattr(index, "nlist", None),
            "nprobe": getattr(index, "nprobe", None), "queries": len(questions),
            "exact_scan_s": time.perf_counter() - started}


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children: against wall time, it shows what a shared machine took."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build(data_dir: Path, pages: int, seed: int) -> dict:
    from kg.ingest import ingest_parsed
    from kgqa.settings import Settings

    started = time.perf_counter()
    sentences = sample_sentences()
    wiki = SyntheticWiki(pages, sentences, seed)
    prepared_s = time.perf_counter() - started
    settings = Settings(data_dir=data_dir, models_dir=data_dir / "models")
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    embedder = HashedProjection()
    summary = ingest_parsed(settings, wiki.pages(), source=f"bench/scale.py --pages {pages} --seed {seed}",
                            embedder=embedder)
    build_s, cpu_s = time.perf_counter() - started, _cpu_seconds() - cpu_started
    return {"wiki": wiki, "prepare_s": prepared_s, "build_s": build_s, "build_cpu_s": cpu_s,
            "pages_per_s": pages / build_s,
            "articles": summary.pages, "redirects": summary.redirects, "passages": summary.passages,
            "triples": summary.triples, "stages_s": summary.stages, "stand_in_embedding_s": embedder.seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=None, help="data folder to build in (default: a temporary one)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the built knowledge base")
    parser.add_argument("--probe", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--questions", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(args.probe, args.questions)
        return
    data_dir = args.out or Path(tempfile.mkdtemp(prefix=f"kgqa-scale-{args.pages}-")) / "data"
    if data_dir.exists() and any(data_dir.iterdir()):
        sys.exit(f"{data_dir} is not empty: give a new folder")
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        built = build(data_dir, args.pages, args.seed)
        wiki = built.pop("wiki")
        questions_file = data_dir / "questions.json"
        questions_file.write_text(json.dumps(wiki.questions(args.queries)))
        result = {"pages": args.pages, "cpu_count": os.cpu_count(), "build": built, "disk_mb": disk_use(data_dir),
                  "serving": measure_serving(data_dir, questions_file),
                  "dense_index": dense_recall(data_dir, json.loads(questions_file.read_text())),
                  "dense_index_sentence_queries": dense_recall(data_dir, wiki.sentence_queries(args.queries)),
                  "load_average": os.getloadavg()}
    finally:
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    print_table(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"scale-{args.pages}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


def print_table(result: dict) -> None:
    build_, serving = result["build"], result["serving"]
    rows = [("pages / passages / triples", f"{result['pages']} / {build_['passages']} / {build_['triples']}"),
            ("build, wall (s)", f"{build_['build_s']:.0f}  ({build_['pages_per_s']:.0f} pages/s, "
                                f"{build_['build_cpu_s']:.0f} s of CPU)")]
    rows += [(f"  stage: {name} (s)", f"{seconds:.1f}") for name, seconds in build_["stages_s"].items()]
    if "stand_in_embedding_s" in build_:
        rows += [("    of which stand-in embedding (s)", f"{build_['stand_in_embedding_s']:.1f}")]
    rows += [("build, peak RSS (MB)", f"{build_['peak_rss_mb']:.0f}")]
    rows += [(f"disk: {name} (MB)", f"{mb:.0f}") for name, mb in result["disk_mb"].items()]
    first, second = serving["first_process"], serving["second_process"]
    rows += [("load, first process (s)", f"{first['load_s']:.1f}"),
             ("RSS after load, first process (MB)", f"{first['rss_mb']:.0f}  (private {first['private_mb']:.0f})"),
             ("load, second process (s)", f"{second['load_s']:.1f}"),
             ("second process: private MB / memory taken", f"{second['private_mb']:.0f} / "
                                                           f"{serving['second_process_adds_mb']:.0f}")]
    rows += [(f"retrieval {mode} p50 / p95 (ms)", f"{lat['p50_ms']:.1f} / {lat['p95_ms']:.1f}")
             for mode, lat in serving["latency"].items()]
    for key, queries in (("dense_index", "the questions"), ("dense_index_sentence_queries", "sentence queries")):
        if key in result:
            dense = result[key]
            rows += [(f"dense {dense['index_kind']} ({dense['nlist']} lists, nprobe {dense['nprobe']}), {queries}: "
                      "recall@10 vs exact", f"{dense['recall_at_10_vs_exact']:.3f}")]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
