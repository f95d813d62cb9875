"""Run the exported sentence-embedding graph with onnxruntime, one text per run.

A text's vector depends on that text alone: each one runs on its own, unpadded.
Batching would couple rows twice over: padding changes the shapes (and so the
summation order) every row is computed with, and the int8 graph quantises
activations with one scale per tensor, taken over every row of the batch, so a
passage's vector would change with its neighbours (cosine down to 0.993 on the
sample dump). Run alone, the same text gives the same bits whether it is a query,
one passage of a clean ingest or of a crash repair. A transformer's matrix
products already span all of a text's tokens, so one text per run costs nothing
measurable against length-sorted batches (bench/embed.py). Texts run
single-threaded, longest first, one per core: on a busy machine that beats one
run split over cores, whose threads wait on each other at every operator.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


class OnnxEncoder:
    """A minimal ``encode`` compatible with the subset of ``SentenceTransformer.encode`` the embedder uses."""

    def __init__(self, model_folder: Path, onnx_file: Path, *, max_seq_length: int | None = None,
                 workers: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.max_seq_length = max_seq_length or _configured_max_length(model_folder)
        self.tokenizer = Tokenizer.from_file(str(model_folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_seq_length)
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.dim = _output_dim(self.session)
        # session.run is thread-safe and releases the GIL, so threads give real parallelism.
        self.workers = workers or max(1, len(os.sched_getaffinity(0)))
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="onnx-encode") if self.workers > 1 else None

    def encode(self, texts: Sequence[str], **_ignored) -> np.ndarray:
        """(n, dim) float32 sentence embeddings, in input order; each row computed from its own text only."""
        encodings = self.tokenizer.encode_batch(list(texts))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        longest_first = np.argsort([-len(e.ids) for e in encodings], kind="stable")  # even load over the cores
        ids = [encodings[i].ids for i in longest_first]
        results = self._pool.map(self._run, ids) if self._pool and len(ids) > 1 else map(self._run, ids)
        for i, vector in zip(longest_first, results):
            out[i] = vector
        return out

    def _run(self, ids: list[int]) -> np.ndarray:
        """One text, unpadded: its vector cannot depend on any other text."""
        input_ids = np.asarray([ids], dtype=np.int64)
        feeds = {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids),
                 "token_type_ids": np.zeros_like(input_ids)}
        feeds = {name: value for name, value in feeds.items() if name in self.input_names}
        return self.session.run(["sentence_embedding"], feeds)[0][0]


def _output_dim(session) -> int:
    """The embedding width, from the graph's output shape (the export fixes it; only the batch is dynamic)."""
    width = session.get_outputs()[0].shape[-1]
    if not isinstance(width, int):
        raise ValueError(f"the ONNX embedder's output has no fixed width ({width!r})")
    return width


def _configured_max_length(model_folder: Path) -> int:
    """The sentence-transformers max_seq_length (256 for all-MiniLM-L6-v2): the model was trained with it."""
    config = model_folder / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text()).get("max_seq_length", 256))
    return 256
