"""Run the exported sentence-embedding graph with onnxruntime, batched by token length.

Texts are tokenised once, sorted by length and cut into batches so each batch
pads only to its own longest text; results go back in input order. Each batch
runs single-threaded and batches run in parallel, one per core: on a busy
machine that beats one batch split over cores, whose threads wait on each other
at every operator.
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
        self.pad_id = self.tokenizer.token_to_id("[PAD]") or 0
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

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, **_ignored) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts))
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        chunks = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
        run = lambda chunk: self._run([encodings[i] for i in chunk])  # noqa: E731
        results = self._pool.map(run, chunks) if self._pool and len(chunks) > 1 else map(run, chunks)
        for chunk, vectors in zip(chunks, results):
            out[chunk] = vectors
        return out

    def _run(self, encodings) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        input_ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        attention = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            input_ids[row, :len(encoding.ids)] = encoding.ids
            attention[row, :len(encoding.ids)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": attention,
                 "token_type_ids": np.zeros_like(input_ids)}
        feeds = {name: value for name, value in feeds.items() if name in self.input_names}
        return self.session.run(["sentence_embedding"], feeds)[0]


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
