"""Which backend decodes: the onnxruntime decoder, transformers ``generate`` or llama.cpp, chosen by ``KGQA_LM_BACKEND``.

``onnx`` runs prefill and decode on the onnxruntime decoder (models/lm/onnx_*.py) and
beam search, which that decoder does not do, on transformers. ``transformers`` runs
everything on transformers ``generate``. ``llamacpp`` runs a GGUF file on llama.cpp in
process (models/lm/llamacpp.py), its quantised weights as they are. ``auto`` picks
llamacpp for a GGUF on CPU, onnx for a model the decoder can express (a Llama-family fp32
model on CPU), else transformers. A backend asked for explicitly never falls back: a
model it cannot run is a ``BackendUnavailable`` error.

Why ``auto`` sends a GGUF to llama.cpp (``bench/generate.py`` on the bundled SmolLM2-135M
GGUF, shared 2-core CPU): llama.cpp decodes about 4x faster than the onnx decoder over the
dequantised weights (76 against 18 tokens/s) and finishes a typical answer sooner, at a
somewhat longer time to the first token (2.9 against 2.1 s for a 499-token prompt), and it
neither dequantises the file to fp32 (several times the memory) nor needs transformers to
know the architecture. The converted bundled model (a safetensors folder) stays on onnx.

llama.cpp's turn is decided before anything loads (``llamacpp_choice``, which
models/lm/factory.py asks); onnx against transformers is decided by ``open_backend``
once the model is loaded, from its config.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kgqa.assets import resolve_lm
from kgqa.errors import KgqaError
from kgqa.settings import Settings
from models.lm.generator import Backend
from models.lm.loader import load_lm, pick_device
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


def choose_backend(requested: str, refusal: str | None, model_name: str, *, gguf: bool = False,
                   device: str = "cpu") -> BackendChoice:
    """The backend for ``KGQA_LM_BACKEND=requested``, given why the onnx decoder refuses the model (if it does),
    whether the model is a GGUF file and the device it would run on."""
    if requested == "llamacpp":
        if not gguf:
            raise BackendUnavailable(f"KGQA_LM_BACKEND=llamacpp runs GGUF files; {model_name} is not one")
        if device != "cpu":
            raise BackendUnavailable(f"KGQA_LM_BACKEND=llamacpp runs on cpu, not {device}; set KGQA_DEVICE=cpu")
        return BackendChoice("llamacpp", "KGQA_LM_BACKEND=llamacpp")
    if requested == "auto" and gguf and device == "cpu":
        return BackendChoice("llamacpp", "auto: a GGUF on cpu runs on llama.cpp, its quantised weights as they are")
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
    raise ValueError(f"unknown LM backend {requested!r}; choose auto, onnx, transformers or llamacpp")


def llamacpp_choice(settings: Settings, *, backend: str | None = None, device: str | None = None) -> BackendChoice | None:
    """llama.cpp's choice when the setting and the model make it (before anything loads), else None.

    ``backend`` and ``device`` default to ``settings.lm_backend`` and ``settings.device``. With
    onnx or transformers asked for, nothing is resolved; with a Hugging Face folder under auto,
    None leaves the choice to ``open_backend``.
    """
    requested = backend or settings.lm_backend
    if requested not in ("auto", "llamacpp"):
        return None
    source = resolve_lm(settings)
    gguf = source.gguf_file is not None
    where = pick_device(device or settings.device) if gguf else "cpu"
    choice = choose_backend(requested, None, source.label, gguf=gguf, device=where)
    return choice if choice.backend == "llamacpp" else None


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
    if requested == "llamacpp":
        raise BackendUnavailable("llama.cpp runs on LlamaCppGenerator (make_generator in models/lm/factory.py), "
                                 "not on the onnx or transformers backends")
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

