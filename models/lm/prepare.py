"""Prepare the bundled LM once: dequantise its GGUF to a safetensors folder that reloads in ~1 s."""

from __future__ import annotations

import shutil
from pathlib import Path

from kgqa.assets import bundled_gguf_path, converted_lm_dir
from kgqa.settings import Settings


def convert_bundled_lm(settings: Settings) -> Path:
    """Dequantise the bundled GGUF once and save it as safetensors; reloading that takes ~1 s, not ~20 s."""
    target = converted_lm_dir(settings)
    if (target / "config.json").is_file():
        return target
    gguf = bundled_gguf_path()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF weights are already dequantised to float tensors on load; dropping the
    # quantizer marker lets transformers save them as a plain checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = target.with_name(target.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.replace(target)
    return target
