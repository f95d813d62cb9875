"""Which backend decodes: the onnxruntime decoder or transformers ``generate``, chosen by ``KGQA_LM_BACKEND``.

``onnx`` runs prefill and decode on the onnxruntime decoder (models/lm/onnx_*.py) and
beam search, which that decoder does not do, on transformers. ``transformers`` runs
everything on transformers ``generate``. ``auto`` picks onnx for a model the decoder can
express (a Llama-family fp32 model on CPU), else transformers. ``onnx`` asked for
explicitly never falls back: a model it cannot run is a ``BackendUnavailable`` error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kgqa.errors import KgqaError
from kgqa.settings import Settings
from models.lm.generator import Backend
from models.lm.loader import load_lm
from models.lm.onnx_generation import OnnxBackend
from models.lm.onnx_llama import UnsupportedModel, llama_shape
from models.lm.transformers_backend import TransformersBackend

log = logging.getLogger(__name__)

DecodingBackend = OnnxBackend | TransformersBackend


class BackendUnavailable(KgqaError):
    """The LM backend asked for cannot run the configured model on the configured device."""


@dataclass(frozen=True)
class BackendChoice:
    backend: Backend
    reason: str


def onnx_refusal(config: Any, *, device: str, dtype: str) -> str | None:
    """Why the onnx decoder cannot run this model, or None when it can (a config check; nothing is built)."""
    if device != "cpu":
        return f"it runs on cpu only and the model is on {device}"
    if dtype != "float32":
        return f"it runs fp32 weights, not {dtype}"
    try:
        llama_shape(config)
    except UnsupportedModel as exc:
        return str(exc)
    return None


def choose_backend(requested: str, refusal: str | None, model_name: str) -> BackendChoice:
    """The backend for ``KGQA_LM_BACKEND=requested``, given why the onnx decoder refuses the model (if it does)."""
    if requested == "transformers":
        return BackendChoice("transformers", "KGQA_LM_BACKEND=transformers")
    if requested == "onnx":
        if refusal:
            raise BackendUnavailable(
                f"KGQA_LM_BACKEND=onnx cannot run {model_name}: {refusal}; use KGQA_LM_BACKEND=transformers or auto"
            )
        return BackendChoice("onnx", "KGQA_LM_BACKEND=onnx")
    if requested == "auto":
        if refusal:
            return BackendChoice("transformers", f"auto: the onnx decoder cannot run it ({refusal})")
        return BackendChoice("onnx", "auto: a Llama-family fp32 model on cpu runs on the onnx decoder")
    raise ValueError(f"unknown LM backend {requested!r}; choose auto, onnx or transformers")


def open_backend(
    settings: Settings,
    *,
    batch_size: int,
    backend: str | None = None,
    device: str | None = None,
    attention: str | None = None,
) -> DecodingBackend:
    """Load the LM and the backend that will decode it; the choice and its reason are logged.

    ``backend`` and ``device`` default to ``settings.lm_backend`` and ``settings.device``;
    the onnx backend runs on CPU, so with it ``device="auto"`` means cpu.
    """
    requested = backend or settings.lm_backend
    device = device or settings.device
    if requested == "onnx" and device == "auto":
        device = "cpu"
    lm = load_lm(settings, device=device, attention=attention)
    choice = choose_backend(requested, onnx_refusal(lm.model.config, device=lm.device, dtype=lm.dtype), lm.model_name)
    opened: DecodingBackend
    if choice.backend == "onnx":
        opened = OnnxBackend.from_lm(lm, choice.reason, batch_size=batch_size)
    else:
        opened = TransformersBackend(lm, choice.reason)
    log.info("%s on %s decodes on the %s backend (%s)", lm.model_name, lm.device, opened.name, opened.reason)
    return opened

