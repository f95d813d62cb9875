"""Passage and query embeddings with the bundled all-MiniLM-L6-v2 model.

``Embedder`` picks the fastest backend that loads: an int8 ONNX export of the
local model run by onnxruntime (built once under ``settings.models_dir``), else
plain sentence-transformers on torch. Both give L2-normalised 384-d float32
vectors, so the FAISS inner product is the cosine similarity.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from kgqa.assets import resolve_embedder
from kgqa.settings import Settings

logger = logging.getLogger(__name__)

Backend = Literal["auto", "onnx-int8", "onnx", "torch"]
EMBEDDING_DIM = 384


def document_text(title: str, section: str, text: str) -> str:
    """What gets embedded for a passage: the page title and section path give the text its topic.

    A passage like "It was founded in 1819" says nothing about Alabama on its own;
    the prefix makes "When was Alabama founded?" find it.
    """
    heading = " > ".join(part for part in (title.strip(), section.strip()) if part)
    return f"{heading}\n{text.strip()}" if heading else text.strip()


class Embedder:
    """Encode passages in batches and single queries, normalised, with one loaded model."""

    def __init__(
        self,
        settings: Settings,
        *,
        backend: Backend = "auto",
        batch_size: int = 32,
        max_seq_length: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.settings = settings
        self.requested_backend: Backend = backend
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.backend: str | None = None  # the backend that actually loaded, set by warm_up()
        self._model = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return EMBEDDING_DIM

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
            self._model, self.backend = self._load()
            logger.info("embedder loaded: backend=%s", self.backend)

    def _load(self):
        folder = resolve_embedder(self.settings)
        device = _torch_device(self.settings)
        wants_onnx = self.requested_backend in ("onnx", "onnx-int8") or (
            self.requested_backend == "auto" and device == "cpu")  # on a GPU, torch is the fast path
        if wants_onnx:
            from models.embedding.onnx_encoder import OnnxEncoder
            from models.embedding.onnx_export import prepare_onnx_model

            quantized = self.requested_backend != "onnx"
            try:
                model_file = prepare_onnx_model(self.settings, quantized=quantized)
                encoder = OnnxEncoder(folder, model_file, max_seq_length=self.max_seq_length)
                return encoder, "onnx-int8" if quantized else "onnx"
            except Exception as exc:  # any failure of the fast path must not stop the service
                if self.requested_backend != "auto":
                    raise
                logger.warning("fast ONNX embedder unavailable (%s: %s); falling back to torch",
                               type(exc).__name__, exc)
        return _load_torch(folder, device, self.max_seq_length), "torch"

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed passages (already passed through ``document_text``): (n, 384) float32, L2-normalised."""
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.warm_up()
        vectors = self._model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        """Embed one question: (384,) float32, L2-normalised."""
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


def _load_torch(folder: Path, device: str, max_seq_length: int | None):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device=device, local_files_only=True)
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return model
