"""Run the ONNX Llama graph one step at a time with the KV cache kept as numpy arrays.

``prefill`` takes whole prompts (optionally after a cached shared prefix) and
``step`` one new token per row. A batch's rows may differ in length: each row's
padding sits between the shared prefix and its own tokens, is masked out of every
attention, and takes no position, so a padded row computes exactly what it would
alone. Finished rows leave the batch through ``KVBatch.keep``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from models.lm.onnx_llama import MASKED, LlamaShape, build_llama_graph, llama_shape

log = logging.getLogger(__name__)


@dataclass
class KVBatch:
    """The cache of a batch in flight: per-layer keys/values, which key slots are real, next positions."""

    past: list  # 2 * layers arrays [B, KV, T, D], keys then values per layer
    key_valid: Any  # bool [B, T]
    next_position: Any  # int64 [B]

    @property
    def rows(self) -> int:
        return int(self.key_valid.shape[0])

    def keep(self, rows: list[int]) -> "KVBatch":
        """Only ``rows`` go on decoding; the others' cache is dropped, not carried along."""
        return KVBatch([kv[rows] for kv in self.past], self.key_valid[rows], self.next_position[rows])

    def merge(self, other: "KVBatch") -> "KVBatch":
        """Rows of both batches in one; the shorter cache gets masked empty slots in front."""
        import numpy as np

        width = max(self.key_valid.shape[1], other.key_valid.shape[1])

        def front(array, axis: int):
            pad = [(0, 0)] * array.ndim
            pad[axis] = (width - array.shape[axis], 0)
            return np.pad(array, pad)

        past = [np.concatenate([front(a, 2), front(b, 2)]) for a, b in zip(self.past, other.past)]
        valid = np.concatenate([front(self.key_valid, 1), front(other.key_valid, 1)])
        return KVBatch(past, valid, np.concatenate([self.next_position, other.next_position]))


@dataclass(frozen=True, eq=False)  # compared by identity: its arrays have no single truth value
class CachedPrefix:
    """A prompt's token ids and its cache, reusable for any prompt that starts the same way."""

    token_ids: tuple[int, ...]
    past: list  # arrays [1, KV, len(token_ids), D]

    def shared_length(self, prompts: list[list[int]]) -> int:
        """How many leading tokens every prompt shares with this prefix, leaving each at least one to run."""
        length = len(self.token_ids)
        for prompt in prompts:
            common = 0
            for a, b in zip(self.token_ids[:length], prompt):
                if a != b:
                    break
                common += 1
            length = min(length, common, len(prompt) - 1)
        return length


class OnnxDecoder:
    """One onnxruntime session over a Llama-family model's weights; thread-safe for sequential callers."""

    def __init__(self, session: Any, shape: LlamaShape, pad_id: int):
        self.session = session
        self.shape = shape
        self.pad_id = pad_id
        self._past_names = [f"past_{kind}_{i}" for i in range(shape.layers) for kind in ("key", "value")]

    @classmethod
    def from_model(cls, model: Any, *, threads: int, pad_id: int) -> "OnnxDecoder":
        """Build the graph from a loaded HF model and open a session; raises ``UnsupportedModel``."""
        import time

        import onnxruntime as ort

        started = time.perf_counter()
        shape = llama_shape(model.config)
        graph = build_llama_graph(model).SerializeToString()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        log.info("onnx decoder ready in %.1fs (%d threads)", time.perf_counter() - started, threads)
        return cls(session, shape, pad_id)

    # -- steps -----------------------------------------------------------------------------
    def prefill(self, prompts: list[list[int]], prefix: CachedPrefix | None = None,
                run_options=None) -> tuple[Any, KVBatch]:
        """Logits [B,V] for each prompt's next token and the batch's cache; ``run_options`` (onnxruntime's
        ``RunOptions``) lets another thread stop it (``terminate``), which raises here."""
        import numpy as np

        shared = prefix.shared_length(prompts) if prefix is not None else 0
        rows = len(prompts)
        tails = [prompt[shared:] for prompt in prompts]
        width = max(len(tail) for tail in tails)
        ids = np.full((rows, width), self.pad_id, dtype=np.int64)
        positions = np.full((rows, width), shared, dtype=np.int64)
        valid = np.zeros((rows, shared + width), dtype=bool)
        valid[:, :shared] = True
        for r, tail in enumerate(tails):
            start = width - len(tail)
            ids[r, start:] = tail
            positions[r, start:] = np.arange(shared, shared + len(tail))
            valid[r, shared + start:] = True
        if shared:
            past = [np.repeat(kv[:, :, :shared], rows, axis=0) for kv in prefix.past]
        else:
            empty = np.zeros((rows, self.shape.kv_heads, 0, self.shape.head_dim), dtype=np.float32)
            past = [empty] * len(self._past_names)
        query_at = shared + np.arange(width)
        causal = np.arange(shared + width)[None, :] <= query_at[:, None]  # [S, T]
        allowed = causal[None] & valid[:, None, :]
        bias = np.where(allowed, 0.0, MASKED).astype(np.float32)[:, None, None]
        logits, present = self._run(ids, positions, bias, past, run_options)
        next_position = np.array([shared + len(tail) for tail in tails], dtype=np.int64)
        return logits, KVBatch(present, valid, next_position)

    def step(self, tokens: list[int], batch: KVBatch) -> tuple[Any, KVBatch]:
        """Feed one token per row; returns the next logits and the grown cache."""
        import numpy as np

        ids = np.asarray(tokens, dtype=np.int64)[:, None]
        valid = np.concatenate([batch.key_valid, np.ones((batch.rows, 1), dtype=bool)], axis=1)
        bias = np.where(valid, 0.0, MASKED).astype(np.float32)[:, None, None, None, :]
        logits, present = self._run(ids, batch.next_position[:, None], bias, batch.past)
        return logits, KVBatch(present, valid, batch.next_position + 1)

    def prefix_of(self, prompt: list[int], batch: KVBatch, row: int) -> CachedPrefix | None:
        """The cache of ``row`` (whose prompt is ``prompt``) as a reusable prefix, if it holds no padding."""
        if not batch.key_valid[row].all():
            return None
        past = [kv[row:row + 1, :, :len(prompt)] for kv in batch.past]
        if batch.rows > 1:  # a view would keep the whole batch's cache alive
            past = [kv.copy() for kv in past]
        return CachedPrefix(tuple(prompt), past)

    def _run(self, ids, positions, bias, past, run_options=None) -> tuple[Any, list]:
        feeds = {"input_ids": ids, "position_ids": positions, "attention_bias": bias}
        feeds.update(zip(self._past_names, past))
        logits, *present = self.session.run(None, feeds, run_options)
        return logits, present
