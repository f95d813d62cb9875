"""The LM variants ``bench/generate.py`` compares: the two served backends against plain fp32 ``generate``
and the speedups measured and not adopted.

- ``plain``: fp32 transformers ``generate`` with every intra-op thread (the baseline);
- ``transformers``: the transformers backend as served (fp32, decoding on one thread on CPU);
- ``onnx``: the onnx backend as served (the onnxruntime decoder over the same fp32 weights);
- ``int8``: ``plain`` with dynamically quantised int8 Linear weights (CPU only);
- ``bf16``: ``plain`` in bf16;
- ``compile``: ``plain`` with a static KV cache and ``torch.compile``.

Measured on the shared 2-core AMD EPYC (AVX2, no AVX-512/AMX): int8 changed greedy
answers, bf16 has no hardware support there and ``compile`` spent minutes compiling,
so none of the three is served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kgqa.settings import Settings
from models.lm.backends import open_backend
from models.lm.loader import LoadedLM, load_lm
from models.lm.onnx_generation import OnnxBackend
from models.lm.transformers_backend import DecodeThreads

VARIANTS = ("plain", "transformers", "onnx", "int8", "bf16", "compile")


@dataclass
class Variant:
    """A loaded LM as one variant runs it: the onnx decoder when it has one, else ``generate`` under ``threads``."""

    name: str
    lm: LoadedLM
    decoder: Any = None  # an OnnxDecoder for ``onnx``
    threads: DecodeThreads = field(default_factory=lambda: DecodeThreads(None))  # every thread throughout


def load_variant(settings: Settings, name: str, *, device: str = "cpu") -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose one of {', '.join(VARIANTS)}")
    if name in ("onnx", "transformers"):
        backend = open_backend(settings, batch_size=1, backend=name, device=device)
        if isinstance(backend, OnnxBackend):
            return Variant(name, backend.lm, decoder=backend.decoder)
        return Variant(name, backend.lm, threads=backend.threads)
    lm = load_lm(settings, device=device)
    if name == "int8":
        lm.model = _int8_dynamic(lm.model, device)
    elif name == "bf16":
        import torch

        lm.model = lm.model.to(torch.bfloat16)
    elif name == "compile":
        _static_cache_compile(lm.model, device)
    return Variant(name, lm)


def _int8_dynamic(model: Any, device: str) -> Any:
    """Int8 weights, fp32 activations for every Linear (lm_head included); CPU only."""
    import warnings

    import torch

    if device != "cpu":
        raise ValueError("int8 dynamic quantisation runs on cpu only")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def _static_cache_compile(model: Any, device: str) -> None:
    """A fixed-shape KV cache lets ``torch.compile`` trace one decode graph and replay it each step."""
    from transformers import CompileConfig

    config = CompileConfig(mode="reduce-overhead" if device == "cuda" else "default", dynamic=False)
    config._compile_all_devices = True  # transformers only auto-compiles on accelerators otherwise
    model.generation_config.cache_implementation = "static"
    model.generation_config.compile_config = config
