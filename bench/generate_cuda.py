"""GPU half of bench/generate.py: flash (SDPA) vs eager attention and batched vs sequential decoding.

Models are built from configs with random weights (the bundled 135M config and a
Llama-style ~1B config), in bf16, so the numbers measure kernels, not checkpoints.
"""

from __future__ import annotations

import time

LLAMA_1B = dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                intermediate_size=8192, vocab_size=49152, max_position_embeddings=8192, head_dim=64)


def build(config_overrides: dict | None, attention: str):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from kgqa.assets import resolve_lm
    from kgqa.settings import Settings

    config = AutoConfig.from_pretrained(resolve_lm(Settings()).folder)
    for key, value in (config_overrides or {}).items():
        setattr(config, key, value)
    config._attn_implementation = attention
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation=attention)
    return model.to("cuda").eval()


def cuda_time(fn, repeats: int = 3) -> float:
    import torch

    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return best


def kernels(attention: str):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION] if attention == "sdpa" else list(SDPBackend))


def prefill_tok_s(model, attention: str, length: int) -> float:
    import torch

    ids = torch.randint(100, 40000, (1, length), device="cuda")
    with torch.inference_mode(), kernels(attention):
        seconds = cuda_time(lambda: model(input_ids=ids, use_cache=False, logits_to_keep=1))
    return length / seconds


def decode_tok_s(model, attention: str, batch: int, prompt: int = 128, new: int = 64) -> float:
    import torch

    ids = torch.randint(100, 40000, (batch, prompt), device="cuda")
    def run(n):
        return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                              min_new_tokens=n, do_sample=False, pad_token_id=0)
    with torch.inference_mode(), kernels(attention):
        full, first = cuda_time(lambda: run(new), 2), cuda_time(lambda: run(1), 2)
    return batch * (new - 1) / (full - first)


def batched_vs_sequential(model, requests: int = 32, new: int = 64) -> dict:
    """32 requests answered one generate call each vs one left-padded batch of 32 (varied prompt lengths)."""
    import torch

    prompts = [torch.randint(100, 40000, (96 + 8 * (i % 8),), device="cuda") for i in range(requests)]
    width = max(len(p) for p in prompts)
    ids = torch.zeros(requests, width, dtype=torch.long, device="cuda")
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):], mask[i, width - len(p):] = p, 1
    kw = dict(max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0)
    with torch.inference_mode():
        sequential = cuda_time(lambda: [model.generate(input_ids=p[None], **kw) for p in prompts], 1)
        batched = cuda_time(lambda: model.generate(input_ids=ids, attention_mask=mask, **kw), 1)
    tokens = requests * new
    return {"requests": requests, "sequential_tok_s": tokens / sequential, "batched_tok_s": tokens / batched,
            "ratio": sequential / batched}


def run_cuda(args) -> dict:
    import torch

    rows, throughput = [], {}
    for name, overrides in (("smollm2-135m", None), ("llama-1b", LLAMA_1B)):
        for attention in ("sdpa", "eager"):
            model = build(overrides, attention)
            row = {"model": name, "attention": "sdpa-flash" if attention == "sdpa" else "eager"}
            for length in (512, 2048, 4096):
                row[f"prefill_{length}_tok_s"] = prefill_tok_s(model, attention, length)
            for batch in (1, 32):
                row[f"decode_b{batch}_tok_s"] = decode_tok_s(model, attention, batch)
            if attention == "sdpa":
                throughput[name] = batched_vs_sequential(model)
            rows.append(row)
            del model
            torch.cuda.empty_cache()
    keys = [k for k in rows[0] if k not in ("model", "attention")]
    print(f"{'model':<14}{'attention':<12}" + "".join(f"{k.replace('_tok_s', ''):>14}" for k in keys) + "  (tokens/s)")
    for row in rows:
        print(f"{row['model']:<14}{row['attention']:<12}" + "".join(f"{row[k]:>14.0f}" for k in keys))
    for name, t in throughput.items():
        print(f"{name}: 32 concurrent requests batched {t['batched_tok_s']:.0f} tok/s vs sequential "
              f"{t['sequential_tok_s']:.0f} tok/s = {t['ratio']:.1f}x")
    return {"device": "cuda", "gpu": torch.cuda.get_device_name(0), "dtype": "bfloat16",
            "attention_rows": rows, "batched_vs_sequential": throughput}
