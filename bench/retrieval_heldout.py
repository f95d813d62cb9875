"""Retrieval on a corpus nobody tuned for: hybrid against plain RRF, BM25, dense int8 and fp32, dev beside test.

    python bench/retrieval_heldout.py [--data-dir DIR] [--distractors 30000] [--limit N]

The corpus is the sample knowledge base's passages plus ``--distractors`` passages of
WordNet and FOLDOC (``bench/retrieval_corpus.py`` says why and how). Question sets, each
split dev/test by article (the sample's split; no test article is ever seen in tuning):

- ``sample``: the hand-written answerable questions of ``data/eval/sample`` (they mostly
  name their subject and ask one fact of it);
- ``describe``: ``data/eval/heldout/describe-*.jsonl``, one question per article that
  describes it without its title, written for this benchmark (see the README there).

Every mode runs whole per query (query encoding included), through the same components
the service uses: BM25 (``retrieval.sparse``), the FAISS index kind a knowledge base of
this size gets (``kg.vector_index``; IVF-SQ8 past 20k passages), and the pipeline's
fusions (``retrieval.pipeline.fuse_hybrid``). Modes:

- ``sparse``, ``dense`` (int8 ONNX encoder, the default), ``dense-fp32`` (the fp32 ONNX export);
- ``rrf``: plain reciprocal-rank fusion, k = 60, equal weights, of the two lists as they come;
- ``hybrid``: what the service's hybrid mode fuses (``retrieval.tuning.HYBRID_FUSION``);
- ``hybrid-fp32``: the same with the fp32 encoder;
- ``graph``: graph mode's fusion (``retrieval.pipeline.fuse_graph``) of these dense and sparse
  lists with the boosts the service computes for the question on the sample KB (its link graph
  and facts; a distractor is in neither). Its latency adds that second retrieval.

On the sample KB alone every mode runs through the service's own pipeline (``sample KB``
rows: sparse, dense, plain RRF, hybrid, graph; what ``kgqa eval retrieval`` measures).
Every row reports the article metrics (a passage of the gold article is a hit) beside the
evidence metrics (only the passage that states the answer is a hit, for the questions that
name one: the sample's answerable ones). Article recall@5 is near 1 on every set; the
evidence metrics are where a fusion or encoder change shows. The dev split also chooses
``HYBRID_FUSION`` (``--tune``: ``evaluation.fusion_tuning.tune_hybrid``).
Writes bench/results/retrieval-heldout.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from retrieval_corpus import Doc, build_corpus, embed_corpus  # noqa: E402

MODES = ("sparse", "dense", "dense-fp32", "rrf", "hybrid", "hybrid-fp32", "graph")
KB_MODES = ("sparse", "dense", "rrf", "hybrid", "graph")
METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "evidence_recall@1", "evidence_recall@5",
           "evidence_recall@10", "evidence_mrr@10", "latency_p50_ms")
HEADERS = ("r@1", "r@5", "r@10", "MRR@10", "nDCG@10", "evidence r@1", "evidence r@5", "evidence r@10",
           "evidence MRR@10", "p50 ms")
SETS = {"sample": ("data/eval/sample/dev.jsonl", "data/eval/sample/test.jsonl"),
        "describe": ("data/eval/heldout/describe-dev.jsonl", "data/eval/heldout/describe-test.jsonl")}
POOL = 100  # what each ranker hands fusion, as retrieval.pipeline.POOL


@dataclass(frozen=True)
class Hit:
    """What ``evaluation.retrieval_eval.relevance`` reads: a distractor's title is its source id, never a gold title."""

    passage_id: str
    title: str
    text: str


class HeldoutRetriever:
    """BM25 and two dense indexes over one corpus; ``retrieve`` is the evaluation ``Retriever`` protocol."""

    def __init__(self, docs: list[Doc], encoders: dict, vectors: dict, fusion, boosts=None) -> None:
        from kg.vector_index import VectorIndex
        from retrieval.sparse import SparseIndex

        self.docs = docs
        self.by_key = {doc.key: doc for doc in docs}
        self.position = {doc.key: str(at) for at, doc in enumerate(docs)}
        self.fusion = fusion
        self.boosts = boosts  # question -> the sample KB's graph-mode Rankings (its PPR and fact rankings)
        self.encoders = encoders
        keys = [str(at) for at in range(len(docs))]
        self.sparse = SparseIndex().build(keys, [f"{doc.heading} {doc.text}" for doc in docs])
        self.indexes = {}
        for name, matrix in vectors.items():
            index = VectorIndex.create(matrix.shape[1])
            index.add(np.arange(len(docs), dtype=np.int64), np.ascontiguousarray(matrix, dtype=np.float32))
            self.indexes[name] = index

    def lists(self, question: str, encoder: str = "int8", *, pool: int = POOL) -> tuple[list[str], list[str]]:
        """(dense, sparse) rankings of document positions, best first, as the pipeline builds them."""
        vector = self.encoders[encoder].encode_query(question)
        _, ids = self.indexes[encoder].search(vector.reshape(1, -1), pool)
        dense = [str(int(i)) for i in ids[0] if i >= 0]
        return dense, [key for key, _ in self.sparse.search(question, pool)]

    def retrieve(self, question: str, *, k: int = 10, mode: str = "hybrid") -> list[Hit]:
        from retrieval.fusion import reciprocal_rank_fusion
        from retrieval.pipeline import Rankings, fuse_graph, fuse_hybrid

        encoder = "fp32" if mode.endswith("fp32") else "int8"
        if mode == "sparse":
            ranked = [key for key, _ in self.sparse.search(question, k)]
        elif mode.startswith("dense"):
            _, ids = self.indexes[encoder].search(self.encoders[encoder].encode_query(question).reshape(1, -1), k)
            ranked = [str(int(i)) for i in ids[0] if i >= 0]
        else:
            dense, sparse = self.lists(question, encoder)
            if mode == "rrf":
                fused = reciprocal_rank_fusion({"dense": dense, "sparse": sparse})
            elif mode == "graph":  # passage ids, so the sample KB's boosts and article_of read them
                boosts = self.boosts(question) if self.boosts else Rankings(dense=[], sparse=[])  # none: hybrid
                rankings = Rankings(dense=[self.docs[int(at)].key for at in dense],
                                    sparse=[self.docs[int(at)].key for at in sparse],
                                    graph=boosts.graph, fact_passages=boosts.fact_passages)
                fused = [(self.position[pid], score, sources) for pid, score, sources in fuse_graph(rankings)]
            else:
                fused = fuse_hybrid(Rankings(dense=dense, sparse=sparse), self.fusion)
            ranked = [key for key, _, _ in fused]
        return [self._hit(key) for key in ranked[:k]]

    def _hit(self, key: str) -> Hit:
        doc = self.docs[int(key)]
        return Hit(doc.key, doc.label, doc.text)


class SampleKBRetriever:
    """The service's own pipeline on the sample knowledge base (no distractors), plus plain RRF beside its hybrid."""

    def __init__(self, settings) -> None:
        from retrieval.knowledge_base import KnowledgeBase
        from retrieval.pipeline import RetrievalPipeline
        from retrieval.tuning import PLAIN_RRF

        kb = KnowledgeBase(settings)
        kb.warm_up()
        self.pipeline, self.plain = RetrievalPipeline(kb), RetrievalPipeline(kb, hybrid=PLAIN_RRF)

    def rankings(self, question: str):
        """What graph mode fuses for ``question`` on the sample KB: its dense, sparse, PPR and fact rankings."""
        return self.pipeline.retrieve(question, k=1, mode="graph", with_facts=False).rankings

    def retrieve(self, question: str, *, k: int = 10, mode: str = "hybrid"):
        if mode == "rrf":
            return self.plain.retrieve(question, k=k, mode="hybrid", with_facts=False).passages
        return self.pipeline.retrieve(question, k=k, mode=mode, with_facts=False).passages


def hybrid_cases(retriever: HeldoutRetriever, questions) -> list:
    """Each question's dense (int8) and sparse lists, computed once, for the hybrid grid to re-fuse."""
    from evaluation.fusion_tuning import TuningCase
    from retrieval.pipeline import Rankings

    cases = []
    for question in questions:
        dense, sparse = ([retriever.docs[int(at)].key for at in ranking] for ranking in retriever.lists(question.question))
        titles = {doc.key: doc.label for doc in map(retriever.by_key.get, {*dense, *sparse})}
        cases.append(TuningCase(question, Rankings(dense=dense, sparse=sparse), titles, None))
    return cases


def _row(set_name: str, split: str, corpus: str, result: dict, mode: str) -> str:
    row = result["modes"][mode]
    return (f"| {set_name} | {split} | {result['questions']} | {corpus} | {mode} | "
            + " | ".join("–" if row[m] is None else f"{row[m]:.1f}" if m.endswith("_ms") else f"{row[m]:.3f}"
                         for m in METRICS) + " |")


def load_split(path: Path, limit: int | None):
    from evaluation.questions import load_questions
    from evaluation.retrieval_eval import is_scorable

    return [q for q in load_questions(path, limit=limit) if is_scorable(q) and q.gold_titles]


def main() -> None:
    from evaluation.fusion_tuning import compare, hybrid_tuning_markdown, tune_hybrid
    from evaluation.retrieval_eval import evaluate_retrieval
    from kgqa.settings import Settings
    from models.embedding.embedder import Embedder
    from retrieval.tuning import HYBRID_FUSION, HybridFusion

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data", help="the sample knowledge base")
    parser.add_argument("--distractors", type=int, default=30_000, help="WordNet and FOLDOC passages added")
    parser.add_argument("--cache-dir", type=Path, default=None, help="corpus vectors (default DATA_DIR/bench)")
    parser.add_argument("--limit", type=int, default=None, help="questions per split file")
    parser.add_argument("--tune", action="store_true", help="also search the hybrid fusion grid on each dev split")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "retrieval-heldout")
    args = parser.parse_args()

    settings = Settings(data_dir=args.data_dir)
    docs = build_corpus(settings, distractors=args.distractors)
    encoders = {"int8": Embedder(settings, backend="onnx-int8"), "fp32": Embedder(settings, backend="onnx")}
    cache = args.cache_dir or settings.data_dir / "bench"
    vectors = {name: embed_corpus(encoder, docs, cache, name) for name, encoder in encoders.items()}
    kb_retriever = SampleKBRetriever(settings)
    kb_retriever.retrieve("warm up", mode="graph")
    retriever = HeldoutRetriever(docs, encoders, vectors, HYBRID_FUSION, boosts=kb_retriever.rankings)
    for encoder in encoders.values():  # vectors read from the cache load no model
        encoder.warm_up()
    sample_passages = sum(1 for doc in docs if not doc.label.startswith(("wordnet ", "foldoc ")))
    report: dict = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "load_average": os.getloadavg(), "passages": len(docs), "sample_passages": sample_passages,
                    "distractors": len(docs) - sample_passages, "faiss_kind": retriever.indexes["int8"].kind,
                    "encoder_backends": {name: encoder.backend for name, encoder in encoders.items()},
                    "hybrid_fusion": asdict(HYBRID_FUSION), "sets": {}}
    lines = [f"### Held-out retrieval, k=10: the sample KB alone ({report['sample_passages']} passages), and with "
             f"{report['distractors']} distractors ({report['passages']} passages, FAISS {report['faiss_kind']})", "",
             "Article metrics count any passage of the gold article; evidence metrics only the passage that states "
             "the answer (the sample's answerable questions name it; the describe questions do not: –).", "",
             "| questions | split | n | corpus | mode | " + " | ".join(HEADERS) + " |", "|" + "---|" * (5 + len(METRICS))]
    cases: dict[str, dict] = {"dev": {}, "test": {}}
    for set_name, paths in SETS.items():
        for split, path in zip(("dev", "test"), paths):
            questions = load_split(ROOT / path, args.limit)
            started = time.perf_counter()
            for corpus, engine, modes in (("sample KB", kb_retriever, KB_MODES), ("+distractors", retriever, MODES)):
                result = evaluate_retrieval(engine, questions, modes=modes, k=10, progress=False)
                result.pop("per_question")
                report["sets"].setdefault(set_name, {}).setdefault(split, {})[corpus] = result
                lines += [_row(set_name, split, corpus, result, mode) for mode in modes]
            print(f"{set_name}/{split}: {len(questions)} questions in {time.perf_counter() - started:.0f}s", flush=True)
            if args.tune:
                cases[split][set_name] = hybrid_cases(retriever, questions)
    if args.tune:  # one choice for the service, from every dev question; then checked on every test split
        tuned = tune_hybrid([case for split in cases["dev"].values() for case in split], progress=False)
        report["tuning"] = {"dev": tuned, "test": {}}
        lines += ["", hybrid_tuning_markdown(tuned, title="dev (all sets)")]
        if tuned["chosen"]:
            chosen = HybridFusion(**tuned["chosen"]["fusion"])
            held_out = {**cases["test"], "all": [case for split in cases["test"].values() for case in split]}
            for name, test_cases in held_out.items():
                check = report["tuning"]["test"][name] = compare(test_cases, chosen)
                lines.append(f"test {name} ({check['questions']}): at least plain RRF on every metric: "
                             f"{check['at_least_base']}; " + ", ".join(
                                 f"{m} {check['metrics'][m]:.3f}/{check['base_metrics'][m]:.3f}" for m in check["metrics"]))
    markdown = "\n".join(lines)
    print(markdown)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    args.out.with_suffix(".md").write_text(markdown + "\n")
    print(f"\nwrote {args.out.with_suffix('.json')} and .md")


if __name__ == "__main__":
    main()
