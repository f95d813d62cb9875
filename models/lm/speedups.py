"""Optional CPU/GPU speedups applied to a loaded model, chosen by ``bench/generate.py`` measurements.

Each speedup must keep greedy answers unchanged on the RAG test prompts; the bench
checks that before a speedup may become a default.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

SPEEDUPS = ("none", "onnx", "decode-1-thread", "int8", "bf16", "compile")


def default_speedup(device: str) -> str:
    """Measured on the shared 2-core AMD EPYC (AVX2, no AVX-512/AMX): bench/results/generate.json.

    ``onnx`` runs the same fp32 weights through onnxruntime (``models/onnx_decoder.py``):
    about 3x the decode speed of plain ``generate``, a quarter less time to first
    token, batching that pays, and the same greedy tokens. Models it cannot express
    fall back to ``decode-1-thread``. int8 dynamic quantisation changed greedy
    answers; bf16 has no hardware support there; ``compile`` spent minutes
    compiling. CUDA gets bf16 weights from the loader and no extra speedup.
    """
    return "onnx" if device == "cpu" else "none"


def apply_speedup(model: Any, name: str, *, device: str) -> Any:
    """Return the model prepared for ``name``; ``none`` returns it untouched."""
    if name not in SPEEDUPS:
        raise ValueError(f"unknown speedup {name!r}; choose one of {', '.join(SPEEDUPS)}")
    if name == "onnx" and device != "cpu":
        raise ValueError("the onnx decoder runs on cpu only")
    if name in ("none", "onnx", "decode-1-thread"):  # these act per call: DecodeThreads, OnnxDecoder
        return model
    if name == "int8":
        return _int8_dynamic(model, device)
    if name == "bf16":
        import torch

        return model.to(torch.bfloat16)
    return _static_cache_compile(model, device)


def _int8_dynamic(model: Any, device: str) -> Any:
    """Int8 weights, fp32 activations for every Linear (lm_head included); CPU only."""
    import warnings

    import torch

    if device != "cpu":
        raise ValueError("int8 dynamic quantisation runs on cpu only")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def _static_cache_compile(model: Any, device: str) -> Any:
    """A fixed-shape KV cache lets ``torch.compile`` trace one decode graph and replay it each step."""
    from transformers import CompileConfig

    config = CompileConfig(mode="reduce-overhead" if device == "cuda" else "default", dynamic=False)
    config._compile_all_devices = True  # transformers only auto-compiles on accelerators otherwise
    model.generation_config.cache_implementation = "static"
    model.generation_config.compile_config = config
    return model


class DecodeThreads:
    """Prefill with every intra-op thread, decode with fewer.

    Prefill is a few large matmuls that split well across cores; a decode step is
    ~400 tiny ops on a 135M model, where waking a second OpenMP thread per op costs
    more than it saves and, on a shared machine, stalls on a descheduled thread.
    Use ``with policy.session():`` around ``generate`` and pass ``policy`` among its
    stopping criteria: its first call happens right after prefill.
    """

    def __init__(self, decode_threads: int | None):
        self.decode_threads = decode_threads
        self._saved: int | None = None

    @classmethod
    def for_speedup(cls, name: str, device: str) -> "DecodeThreads":
        return cls(1 if name == "decode-1-thread" and device == "cpu" else None)

    def session(self):
        import contextlib

        import torch

        @contextlib.contextmanager
        def restore():
            self._saved = torch.get_num_threads()
            try:
                yield self
            finally:
                torch.set_num_threads(self._saved)

        return restore()

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        if self.decode_threads and torch.get_num_threads() != self.decode_threads:
            torch.set_num_threads(self.decode_threads)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
