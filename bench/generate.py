"""Generation speed: CPU speedups against plain fp32 ``generate`` (same run, same greedy answers),
time to first token with a 512-token evidence prompt, and batched vs one-at-a-time throughput.
With ``--device cuda``: flash (SDPA) vs eager attention on random-weight models built from configs.

    python bench/generate.py [--tokens 32] [--speedups none,decode-1-thread,int8,bf16] [--device cuda]

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
from models.loader import load_lm  # noqa: E402

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


def timed_generate(lm, inputs, new_tokens: int, **kw) -> tuple[float, list[int]]:
    import torch

    from models.speedups import DecodeThreads

    threads = DecodeThreads.for_speedup(lm.speedup, lm.device)
    with torch.inference_mode(), threads.session():
        started = time.perf_counter()
        out = lm.model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False,
                                pad_token_id=lm.tokenizer.pad_token_id, stopping_criteria=[threads], **kw)
    return time.perf_counter() - started, out[0, inputs["input_ids"].shape[1]:].tolist()


def measure_variant(settings: Settings, speedup: str, tokens: int, repeats: int) -> dict:
    """TTFT at ~512 prompt tokens, batch-1 decode tokens/s, and greedy answers on the RAG prompts."""
    lm = load_lm(settings, device="cpu", speedup=speedup)
    long_inputs = encode(lm, long_prompt(lm.tokenizer))
    short_inputs = encode(lm, rag_messages(*RAG[0]))
    timed_generate(lm, short_inputs, 4)  # warm-up (and compile, for `compile`)
    ttft = statistics.median(timed_generate(lm, long_inputs, 1)[0] for _ in range(repeats))
    prefill = statistics.median(timed_generate(lm, short_inputs, 1)[0] for _ in range(repeats))
    full = statistics.median(timed_generate(lm, short_inputs, tokens, min_new_tokens=tokens)[0] for _ in range(repeats))
    answers = [lm.tokenizer.decode(timed_generate(lm, encode(lm, rag_messages(q, ps)), 24)[1], skip_special_tokens=True)
               for q, ps in RAG]
    return {"speedup": speedup, "prompt_tokens_ttft": int(long_inputs["input_ids"].shape[1]),
            "ttft_s": ttft, "prefill_tok_s": long_inputs["input_ids"].shape[1] / ttft,
            "decode_tok_s": (tokens - 1) / max(full - prefill, 1e-9), "answers": answers}


def measure_concurrency(settings: Settings, tokens: int) -> dict:
    """Four RAG questions one at a time vs all four submitted together (one batch)."""
    from models.transformers_backend import TransformersGenerator

    gen = TransformersGenerator(settings.with_overrides(batch_size=4), device="cpu")
    conversations = [rag_messages(q, ps) for q, ps in RAG]
    gen.generate(conversations[0], max_new_tokens=2)
    started = time.perf_counter()
    one_by_one = [gen.generate(c, max_new_tokens=tokens) for c in conversations]
    sequential_s = time.perf_counter() - started
    started = time.perf_counter()
    together = gen.generate_batch(conversations, max_new_tokens=tokens)
    batched_s = time.perf_counter() - started
    gen.close()
    seq_tokens, bat_tokens = sum(g.new_tokens for g in one_by_one), sum(g.new_tokens for g in together)
    return {"requests": 4, "sequential_tok_s": seq_tokens / sequential_s, "batched_tok_s": bat_tokens / batched_s,
            "ratio": (bat_tokens / batched_s) / (seq_tokens / sequential_s),
            "same_answers": [g.text for g in one_by_one] == [g.text for g in together]}


def run_cpu(args) -> dict:
    import torch

    settings = Settings()
    variants = [measure_variant(settings, s, args.tokens, args.repeats) for s in args.speedups.split(",")]
    base = variants[0]
    for v in variants:
        v["decode_vs_baseline"] = v["decode_tok_s"] / base["decode_tok_s"]
        v["same_greedy_answers"] = v["answers"] == base["answers"]
    print(f"{'speedup':<9}{'TTFT@' + str(base['prompt_tokens_ttft']):>10}{'prefill t/s':>12}{'decode t/s':>11}"
          f"{'x base':>8}{'same answers':>14}")
    for v in variants:
        print(f"{v['speedup']:<9}{v['ttft_s']:>9.2f}s{v['prefill_tok_s']:>12.0f}{v['decode_tok_s']:>11.1f}"
              f"{v['decode_vs_baseline']:>8.2f}{str(v['same_greedy_answers']):>14}")
    concurrency = measure_concurrency(settings, args.tokens)
    print(f"4 concurrent: sequential {concurrency['sequential_tok_s']:.1f} tok/s, batched "
          f"{concurrency['batched_tok_s']:.1f} tok/s, ratio {concurrency['ratio']:.2f}x, "
          f"same answers {concurrency['same_answers']}")
    return {"device": "cpu", "cpu": platform.processor() or _cpu_model(), "threads": torch.get_num_threads(),
            "load_avg_at_end": os.getloadavg(), "tokens": args.tokens, "variants": variants,
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
    parser.add_argument("--speedups", default="none,decode-1-thread,int8", help="first one is the baseline")
    args = parser.parse_args()
    if args.device == "cuda":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from generate_cuda import run_cuda

        result = run_cuda(args)
    else:
        result = run_cpu(args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
