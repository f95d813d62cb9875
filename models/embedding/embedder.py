"""Passage and query embeddings with the configured sentence-transformers model (bundled: all-MiniLM-L6-v2).

``Embedder`` picks the fastest backend that loads: an ONNX export of the local
model run by onnxruntime (built once under ``settings.models_dir``; dynamic int8,
or fp32 with ``settings.embedder_precision``), else plain sentence-transformers on
torch. Both give L2-normalised float32 vectors of the model's width (384 for the
bundled model), so the FAISS inner product is the cosine similarity. Every
backend encodes each text on its own, unpadded, so a vector depends on its text
alone: a passage gets the same bits in a clean ingest, a crash repair or a re-run,
and a query is encoded exactly as a passage would be.
On CUDA the model runs in fp16 in large batches (``GPU_BATCH``) instead: a GPU
wants thousands of tokens per step, and there a vector may move with its batch's
padding within fp16 precision, which the repair protocol tolerates (a re-embedded
passage gets a vector as good, not the same bits).
``identity`` names the model, its width and a fingerprint of its files, which the
vector index records.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from kgqa.assets import AssetMissing, resolve_embedder
from kgqa.settings import Settings
from models.embedding.identity import (BUNDLED_EMBEDDER_NAME, FINGERPRINT_CACHE_FILE, EmbedderIdentity,
                                       model_fingerprint)

logger = logging.getLogger(__name__)

Backend = Literal["auto", "onnx-int8", "onnx", "torch"]
# Passages per forward pass on CUDA, in fp16. sentence-transformers sorts a call's texts by length, so
# a batch pads little; 256 x 256 tokens of MiniLM is ~100 MB of activations, far inside any GPU.
GPU_BATCH = 256


class PassageEncoder(Protocol):
    """What ingestion needs of an embedder: ``Embedder``, or a stand-in (``bench/scale.py``, tests)."""

    identity: EmbedderIdentity  # recorded by the index it fills
    batch_size: int  # texts per forward pass; ingestion hands over at least this many at a time

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray: ...


def document_text(title: str, section: str, text: str) -> str:
    """What gets embedded for a passage: the page title and section path give the text its topic.

    A passage like "It was founded in 1819" says nothing about Alabama on its own;
    the prefix makes "When was Alabama founded?" find it.
    """
    heading = " > ".join(part for part in (title.strip(), section.strip()) if part)
    return f"{heading}\n{text.strip()}" if heading else text.strip()


class Embedder:
    """Encode passages and queries, normalised, with one loaded model; each text independently of the others."""

    def __init__(
        self,
        settings: Settings,
        *,
        backend: Backend = "auto",
        max_seq_length: int | None = None,
    ) -> None:
        self.settings = settings
        self.requested_backend: Backend = backend
        self.max_seq_length = max_seq_length
        self.backend: str | None = None  # the backend that actually loaded, set by warm_up()
        self.device: str | None = None  # where it runs ("cpu", "cuda"), set by warm_up()
        self._model = None
        self._dim: int | None = None
        self._identity: EmbedderIdentity | None = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        """The vector width: the loaded model's; before loading, the ONNX export's when that is the
        backend to load (its manifest or source config says, no load needed), else the model is loaded to ask it."""
        if self._dim is None:
            planned = self._planned_onnx_dim()
            if planned is None:
                self.warm_up()
            elif self._dim is None:
                self._dim = planned
        return self._dim

    @property
    def identity(self) -> EmbedderIdentity:
        """Name, width and file fingerprint of the configured model (hashing is cached under models_dir)."""
        if self._identity is None:
            folder = resolve_embedder(self.settings)
            try:
                fingerprint = model_fingerprint(folder, self.settings.models_dir / FINGERPRINT_CACHE_FILE)
            except (OSError, ValueError) as exc:
                raise AssetMissing(f"cannot read the embedder at {folder}: {exc}") from None
            name = str(folder) if self.settings.embedder_path else BUNDLED_EMBEDDER_NAME
            self._identity = EmbedderIdentity(name=name, dim=self.dim, fingerprint=fingerprint)
        return self._identity

    @property
    def ready(self) -> bool:
        return self._model is not None

    def warm_up(self) -> None:
        """Load the model once; later calls return at once."""
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            model, backend = self._load()
            dim = _loaded_dim(model)
            if self._dim is not None and dim != self._dim:
                raise RuntimeError(f"the {backend} embedder gives {dim}-d vectors, {self._dim} were expected")
            self._model, self.backend, self._dim = model, backend, dim
            logger.info("embedder loaded: backend=%s, %d-d", self.backend, dim)

    def _wants_onnx(self) -> bool:
        return self.requested_backend in ("onnx", "onnx-int8") or (
            self.requested_backend == "auto" and _torch_device(self.settings) == "cpu")  # on a GPU, torch is faster

    def _planned_onnx_dim(self) -> int | None:
        """The width the ONNX backend will give, when it is the one to load and the model can be exported."""
        if not self._wants_onnx():
            return None
        from models.embedding.onnx_export import exported_dim

        try:
            return exported_dim(self.settings)
        except (OSError, ValueError):  # not exportable: loading tells which backend runs, and its width
            return None

    def _load(self):
        folder = resolve_embedder(self.settings)
        self.device = _torch_device(self.settings)
        if self._wants_onnx():
            from models.embedding.onnx_encoder import OnnxEncoder
            from models.embedding.onnx_export import prepare_onnx_model

            quantized = self.requested_backend == "onnx-int8" or (
                self.requested_backend == "auto" and self.settings.embedder_precision == "int8")
            try:
                model_file = prepare_onnx_model(self.settings, quantized=quantized)
                encoder = OnnxEncoder(folder, model_file, max_seq_length=self.max_seq_length)
                self.device = "cpu"
                return encoder, "onnx-int8" if quantized else "onnx"
            except Exception as exc:  # any failure of the fast path must not stop the service
                if self.requested_backend != "auto":
                    raise
                logger.warning("fast ONNX embedder unavailable (%s: %s); falling back to torch",
                               type(exc).__name__, exc)
        return _load_torch(folder, self.device, self.max_seq_length), "torch"

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed passages (already passed through ``document_text``): (n, dim) float32, L2-normalised.

        On CPU row i depends on ``texts[i]`` alone, bit for bit: batching would pad rows to a
        common length and, in the int8 graph, quantise them with one shared scale. On CUDA the
        texts run ``GPU_BATCH`` at a time in fp16 (``batch_size``).
        """
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.warm_up()
        vectors = self._model.encode(  # the ONNX encoder runs one text at a time by itself
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    @property
    def batch_size(self) -> int:
        """Texts per forward pass: ``GPU_BATCH`` on CUDA, else one (a vector depends on its text alone)."""
        return GPU_BATCH if self.device == "cuda" else 1

    def encode_query(self, text: str) -> np.ndarray:
        """Embed one question: (dim,) float32, L2-normalised, exactly as ``encode_documents`` would."""
        if not isinstance(text, str):
            raise TypeError(f"query must be a str, got {type(text).__name__}")
        return self.encode_documents([text])[0]


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("encode_documents takes a sequence of strings, not one string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text {i} is {type(text).__name__}, expected str")
    return texts


def prepare(settings: Settings) -> Path:
    """Build the int8 ONNX export now (``kgqa setup`` calls this) instead of on first use."""
    from models.embedding.onnx_export import prepare_onnx_model

    return prepare_onnx_model(settings, quantized=True)


def _torch_device(settings: Settings) -> str:
    if settings.device != "auto":
        return settings.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _loaded_dim(model) -> int:
    """The width a loaded model gives: the ONNX graph's, or what sentence-transformers reports."""
    from models.embedding.onnx_encoder import OnnxEncoder

    if isinstance(model, OnnxEncoder):
        return model.dim
    report = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = report()
    if dim is None:  # a module chain that does not say: measure one vector
        dim = model.encode(["width"], convert_to_numpy=True, show_progress_bar=False).shape[-1]
    return int(dim)


def _load_torch(folder: Path, device: str, max_seq_length: int | None):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device=device, local_files_only=True)
    if device == "cuda":
        model.half()  # fp16: twice the throughput of fp32 on a GPU's tensor cores, cosine within 1e-3
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return model
