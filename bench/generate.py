"""Generation speed: the onnx and transformers backends and other variants (bench/lm_variants.py) against
plain fp32 ``generate`` (same run, same greedy answers), time to first token with a 512-token evidence prompt,
and batched vs one-at-a-time throughput of each backend. Variant ``llamacpp`` runs the bundled GGUF itself
(its Q4_1 weights, which the others run dequantised to fp32) on llama.cpp in process, prompt cache off.
With ``--device cuda``: flash (SDPA) vs eager attention on random-weight models built from configs.

    python bench/generate.py [--tokens 32] [--variants plain,onnx,transformers,llamacpp,int8,bf16] [--device cuda]

Prints a table and writes bench/results/generate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from kgqa.settings import Settings  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lm_variants import Variant, load_variant  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "generate.json"
SYSTEM = "Answer the question using only the evidence passages. Cite them like [1]. Be brief."
RAG = [
    ("What is the capital of Alabama?", [
        "Alabama is a state in the Southeastern region of the United States. Its capital is Montgomery, "
        "and its largest city by population and area is Huntsville.",
        "Birmingham is the largest metropolitan area in Alabama and its economic centre."]),
    ("Who wrote Animal Farm?", [
        "Animal Farm is a satirical allegorical novella by George Orwell, first published in England "
        "on 17 August 1945.",
        "The book tells the story of a group of farm animals who rebel against their human farmer."]),
    ("When did Apollo 11 land on the Moon?", [
        "Apollo 11 was the American spaceflight that first landed humans on the Moon. Commander Neil "
        "Armstrong and pilot Buzz Aldrin landed the Apollo Lunar Module Eagle on July 20, 1969.",
        "Armstrong became the first person to step onto the Moon's surface six hours later."]),
    ("Where was Albert Einstein born?", [
        "Albert Einstein was a German-born theoretical physicist, born in Ulm, in the Kingdom of "
        "Württemberg in the German Empire, on 14 March 1879.",
        "He developed the theory of relativity, one of the two pillars of modern physics."]),
]


def rag_messages(question: str, passages: list[str]) -> list[dict]:
    evidence = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages, 1))
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Evidence:\n{evidence}\n\nQuestion: {question}"}]


def long_prompt(tokenizer, target: int = 512) -> list[dict]:
    """A RAG prompt padded with real-looking evidence until the templated prompt is ~``target`` tokens."""
    passages = [p for _, ps in RAG for p in ps]
    chosen: list[str] = []
    while True:
        messages = rag_messages(RAG[0][0], chosen + [passages[len(chosen) % len(passages)]])
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if len(tokenizer(ids)["input_ids"]) > target:
            return rag_messages(RAG[0][0], chosen)
        chosen.append(passages[len(chosen) % len(passages)])


def encode(lm, messages):
    text = lm.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return lm.tokenizer(text, add_special_tokens=False, return_tensors="pt")


def timed_generate(variant: Variant, inputs, new_tokens: int, **kw) -> tuple[float, list[int]]:
    """Transformers ``generate`` under the variant's thread policy."""
    import torch

    lm, threads = variant.lm, variant.threads
    with torch.inference_mode(), threads.session():
        started = time.perf_counter()
        out = lm.model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False,
                                pad_token_id=lm.tokenizer.pad_token_id, stopping_criteria=[threads], **kw)
    return time.perf_counter() - started, out[0, inputs["input_ids"].shape[1]:].tolist()


def timed_onnx(variant: Variant, inputs, new_tokens: int, prefix=None, **kw) -> tuple[float, list[int]]:
    """The onnx decoder's greedy loop; like ``min_new_tokens``, it never stops early (callers cut at EOS)."""
    ids = inputs["input_ids"][0].tolist()
    started = time.perf_counter()
    logits, batch = variant.decoder.prefill([ids], prefix)
    tokens = [int(logits[0].argmax())]
    for _ in range(new_tokens - 1):
        logits, batch = variant.decoder.step(tokens[-1:], batch)
        tokens.append(int(logits[0].argmax()))
    return time.perf_counter() - started, tokens


def answer_text(lm, tokens: list[int]) -> str:
    eos = lm.tokenizer.eos_token_id
    return lm.tokenizer.decode(tokens[:tokens.index(eos)] if eos in tokens else tokens, skip_special_tokens=True)


def measure_variant(settings: Settings, name: str, tokens: int, repeats: int) -> dict:
    """TTFT at ~512 prompt tokens, batch-1 decode tokens/s, and greedy answers on the RAG prompts."""
    variant = load_variant(settings, name, device="cpu")
    lm = variant.lm
    timed = timed_onnx if variant.decoder is not None else timed_generate
    long_inputs = encode(lm, long_prompt(lm.tokenizer))
    short_inputs = encode(lm, rag_messages(*RAG[0]))
    timed(variant, short_inputs, 4)  # warm-up (and compile, for `compile`)
    ttft = statistics.median(timed(variant, long_inputs, 1)[0] for _ in range(repeats))
    prefill = statistics.median(timed(variant, short_inputs, 1)[0] for _ in range(repeats))
    full = statistics.median(timed(variant, short_inputs, tokens, min_new_tokens=tokens)[0] for _ in range(repeats))
    answers = [answer_text(lm, timed(variant, encode(lm, rag_messages(q, ps)), 24)[1]) for q, ps in RAG]
    result = {"variant": name, "prompt_tokens_ttft": int(long_inputs["input_ids"].shape[1]),
              "ttft_s": ttft, "prefill_tok_s": long_inputs["input_ids"].shape[1] / ttft,
              "decode_tok_s": (tokens - 1) / max(full - prefill, 1e-9), "answers": answers}
    if variant.decoder is not None:
        result.update(measure_cached_instructions(variant, long_inputs, repeats))
    return result


def llamacpp_generator(settings: Settings, *, slots: int):
    """The llama.cpp backend on the bundled GGUF, its prompt cache off so every prompt is prefilled anew."""
    from kgqa.assets import bundled_gguf_path
    from models.lm.llamacpp import LlamaCppGenerator

    generator = LlamaCppGenerator(settings.with_overrides(lm_path=str(bundled_gguf_path())), slots=slots,
                                  cache_prompts=False)
    generator.warm_up()
    return generator


def measure_llamacpp(settings: Settings, tokens: int, repeats: int) -> dict:
    """``measure_variant``'s numbers on llama.cpp, timed around the generator's calls (its own thread hand-off included)."""
    from kgqa.assets import resolve_lm
    from models.lm.loader import load_tokenizer

    gen = llamacpp_generator(settings, slots=1)
    long_messages = long_prompt(load_tokenizer(resolve_lm(settings)))
    short = rag_messages(*RAG[0])
    gen.generate(short, max_new_tokens=4)  # warm-up
    ttft_runs = [gen.generate(long_messages, max_new_tokens=1) for _ in range(repeats)]
    ttft = statistics.median(g.total_s for g in ttft_runs)
    prefill = statistics.median(gen.generate(short, max_new_tokens=1).total_s for _ in range(repeats))
    full = statistics.median(gen.generate(short, max_new_tokens=tokens, min_new_tokens=tokens).total_s
                             for _ in range(repeats))
    answers = [gen.generate(rag_messages(q, ps), max_new_tokens=24).text for q, ps in RAG]
    gen.close()
    prompt_tokens = ttft_runs[0].prompt_tokens
    return {"variant": "llamacpp", "prompt_tokens_ttft": prompt_tokens, "ttft_s": ttft,
            "prefill_tok_s": prompt_tokens / ttft, "decode_tok_s": (tokens - 1) / max(full - prefill, 1e-9),
            "answers": answers}


def measure_cached_instructions(variant: Variant, long_inputs, repeats: int) -> dict:
    """TTFT when the cache holds another question's prompt: only the shared instructions are reused."""
    other = encode(variant.lm, rag_messages(*RAG[1]))["input_ids"][0].tolist()
    _, batch = variant.decoder.prefill([other])
    prefix = variant.decoder.prefix_of(other, batch, 0)
    reused = prefix.shared_length([long_inputs["input_ids"][0].tolist()])
    ttft = statistics.median(timed_onnx(variant, long_inputs, 1, prefix=prefix)[0] for _ in range(repeats))
    return {"ttft_cached_instructions_s": ttft, "cached_prefix_tokens": reused}


def measure_concurrency(settings: Settings, tokens: int, backend: str, fixed: bool) -> dict:
    """Four RAG questions one at a time vs all four submitted together (one batch), on one served backend.

    ``fixed`` makes every answer exactly ``tokens`` long (EOS suppressed), as throughput
    benchmarks do; otherwise each answer ends at its own EOS, at most ``tokens``.
    """
    from models.lm.local_generator import LocalGenerator

    if backend == "llamacpp":
        gen = llamacpp_generator(settings, slots=4)
    else:
        gen = LocalGenerator(settings.with_overrides(batch_size=4), backend=backend, device="cpu")
    conversations = [rag_messages(q, ps) for q, ps in RAG]
    knobs = {"max_new_tokens": tokens, "min_new_tokens": tokens if fixed else 0}
    gen.generate(conversations[0], max_new_tokens=2)
    started = time.perf_counter()
    one_by_one = [gen.generate(c, **knobs) for c in conversations]
    sequential_s = time.perf_counter() - started
    started = time.perf_counter()
    together = gen.generate_batch(conversations, **knobs)
    batched_s = time.perf_counter() - started
    gen.close()
    seq_tokens, bat_tokens = sum(g.new_tokens for g in one_by_one), sum(g.new_tokens for g in together)
    return {"backend": gen.backend, "requests": 4, "fixed_length": fixed, "sequential_tok_s": seq_tokens / sequential_s,
            "batched_tok_s": bat_tokens / batched_s,
            "ratio": (bat_tokens / batched_s) / (seq_tokens / sequential_s),
            "same_answers": [g.text for g in one_by_one] == [g.text for g in together]}


def run_cpu(args) -> dict:
    import torch

    settings = Settings()
    load_at_start = os.getloadavg()
    print(f"load average at start: {load_at_start[0]:.2f} {load_at_start[1]:.2f} {load_at_start[2]:.2f}")
    variants = [measure_llamacpp(settings, args.tokens, args.repeats) if name == "llamacpp"
                else measure_variant(settings, name, args.tokens, args.repeats) for name in args.variants.split(",")]
    base = variants[0]
    for v in variants:
        v["decode_vs_baseline"] = v["decode_tok_s"] / base["decode_tok_s"]
        v["same_greedy_answers"] = v["answers"] == base["answers"]
    print(f"{'variant':<16}{'TTFT@' + str(base['prompt_tokens_ttft']):>10}{'prefill t/s':>12}{'decode t/s':>11}"
          f"{'x base':>8}{'same answers':>14}")
    for v in variants:
        print(f"{v['variant']:<16}{v['ttft_s']:>9.2f}s{v['prefill_tok_s']:>12.0f}{v['decode_tok_s']:>11.1f}"
              f"{v['decode_vs_baseline']:>8.2f}{str(v['same_greedy_answers']):>14}")
        if "ttft_cached_instructions_s" in v:
            print(f"{'':<16}TTFT {v['ttft_cached_instructions_s']:.2f}s with the {v['cached_prefix_tokens']} "
                  f"instruction tokens cached")
    concurrency = [measure_concurrency(settings, args.answer_tokens, backend, fixed)
                   for backend in args.concurrency.split(",") for fixed in (False, True)]
    for c in concurrency:
        length = f"{args.answer_tokens} tokens each" if c["fixed_length"] else f"up to {args.answer_tokens} tokens"
        print(f"4 concurrent ({c['backend']}, {length}): sequential {c['sequential_tok_s']:.1f} tok/s, batched "
              f"{c['batched_tok_s']:.1f} tok/s, ratio {c['ratio']:.2f}x, same answers {c['same_answers']}")
    return {"device": "cpu", "cpu": platform.processor() or _cpu_model(), "threads": torch.get_num_threads(),
            "load_avg_at_start": load_at_start, "load_avg_at_end": os.getloadavg(), "tokens": args.tokens, "variants": variants,
            "concurrency": concurrency}


def _cpu_model() -> str:
    try:
        return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per decode measurement")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variants", default="plain,onnx,transformers,llamacpp,int8",
                        help="bench/lm_variants.py names; the first one is the baseline")
    parser.add_argument("--concurrency", default="onnx,transformers,llamacpp", help="backends whose batching to measure")
    parser.add_argument("--answer-tokens", type=int, default=64, help="answer length for the concurrency runs")
    args = parser.parse_args()
    if args.device == "cuda":
        from generate_cuda import run_cuda

        result = run_cuda(args)
    else:
        result = run_cpu(args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
