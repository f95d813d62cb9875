"""Load a local causal LM and its tokenizer onto the right device with the right attention kernel.

Heavy imports stay inside functions: importing this module loads nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from kgqa.assets import AssetMissing, LMSource, resolve_lm
from kgqa.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class LoadedLM:
    """A causal LM and its tokenizer on their device, loaded once; the backends decode with it."""

    model: Any
    tokenizer: Any
    device: str
    attention: str  # what transformers runs: flash_attention_2, sdpa-flash, sdpa or eager
    dtype: str
    model_name: str

    @cached_property
    def eos_ids(self) -> frozenset[int]:
        """Every token that ends an answer: the generation config's EOS ids and the tokenizer's."""
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return frozenset(ids)


def pick_device(requested: str) -> str:
    """``auto`` means cuda when torch sees a GPU, else cpu; asking for cuda without one is an error."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise AssetMissing("KGQA_DEVICE=cuda but torch sees no CUDA device (install a CUDA build of torch)")
    return requested


def pick_attention(device: str) -> str:
    """flash-attn 2 when installed on CUDA, else PyTorch SDPA (which picks its flash kernel on CUDA in bf16)."""
    if device == "cuda":
        import importlib.util

        if importlib.util.find_spec("flash_attn") is not None:
            return "flash_attention_2"
    return "sdpa"


def attention_label(device: str, implementation: str) -> str:
    """What actually ran, for ``generator.attention``: SDPA on CUDA/bf16 dispatches to its flash backend."""
    if implementation == "sdpa" and device == "cuda":
        return "sdpa-flash"
    return implementation


def load_tokenizer(source: LMSource):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.folder, gguf_file=source.gguf_file)
    except (OSError, ValueError) as exc:
        raise AssetMissing(f"cannot load a tokenizer from {source.label}: {str(exc).splitlines()[0]}") from exc
    # Batches are padded on the left so every row's next token sits in the last column.
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_lm(
    settings: Settings,
    *,
    device: str | None = None,
    attention: str | None = None,
    dtype: str | None = None,
) -> LoadedLM:
    """Resolve and load the LM; a wrong path raises ``AssetMissing`` with a one-line message."""
    import torch
    from transformers import AutoModelForCausalLM

    source = resolve_lm(settings)
    device = pick_device(device or settings.device)
    attention = attention or pick_attention(device)
    dtype = dtype or ("bfloat16" if device == "cuda" else "float32")
    tokenizer = load_tokenizer(source)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source.folder,
            gguf_file=source.gguf_file,
            dtype=getattr(torch, dtype),
            attn_implementation=attention,
        )
    except (OSError, ValueError) as exc:
        raise AssetMissing(f"cannot load a causal LM from {source.label}: {str(exc).splitlines()[0]}") from exc
    model.to(device).eval()
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    name = source.gguf_file or source.folder.name
    label = attention_label(device, attention)
    log.info("loaded %s on %s (%s, %s attention)", name, device, dtype, label)
    return LoadedLM(model, tokenizer, device, label, dtype, name)
