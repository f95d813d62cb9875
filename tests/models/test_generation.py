"""The real bundled LM through the generator: decoding modes, stop strings, streaming and batching."""

from __future__ import annotations

import threading

import pytest

from kgqa import assets
from models.lm.generator import Generator
from models.lm.local_generator import LocalGenerator

pytestmark = pytest.mark.slow

CAPITAL = [
    {"role": "system", "content": "Answer the question using only the evidence."},
    {"role": "user", "content": "Evidence:\n[1] Montgomery is the capital of Alabama.\n\nQuestion: What is the capital of Alabama?"},
]
QUESTIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Who wrote Animal Farm? Answer briefly."}],
    CAPITAL,
    [{"role": "user", "content": "Name three animals that live on a farm."}],
]


@pytest.fixture(scope="module")
def generator(project_settings):
    settings = project_settings.with_overrides(batch_size=4, max_new_tokens=16, lm_backend="auto")
    gen = LocalGenerator(settings, device="cpu")
    gen.warm_up()
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def transformers_generator(project_settings):
    gen = LocalGenerator(project_settings.with_overrides(batch_size=4, max_new_tokens=16), backend="transformers",
                         device="cpu")
    gen.warm_up()
    yield gen
    gen.close()


def test_greedy_chat_generation_on_the_bundled_model(generator):
    result = generator.generate(QUESTIONS[0], max_new_tokens=12)
    assert "Paris" in result.text
    assert result.prompt_tokens == len(generator.prompt_ids(QUESTIONS[0])) > 10
    assert 0 < result.new_tokens <= 12
    assert 0 < result.first_token_s <= result.total_s
    assert isinstance(generator, Generator)
    assert (generator.backend, generator.device, generator.attention) == ("onnx", "cpu", "onnxruntime")
    assert generator.backend_reason.startswith("auto:")
    assert "beam search runs on transformers" in generator.backend_reason


def test_greedy_is_deterministic_and_warm_up_is_idempotent(generator):
    generator.warm_up()
    assert generator.generate(QUESTIONS[0], max_new_tokens=8).text == generator.generate(QUESTIONS[0], max_new_tokens=8).text


def test_stop_string_cuts_the_output(generator):
    full = generator.generate(QUESTIONS[0], max_new_tokens=12).text
    words = full.split()
    assert len(words) >= 3, full
    stop = " " + words[2]
    cut = generator.generate(QUESTIONS[0], max_new_tokens=12, stop=[stop])
    assert cut.text == full[: full.index(stop)]
    assert cut.finish_reason == "stop"


def test_seeded_sampling_is_reproducible(generator):
    knobs = dict(max_new_tokens=10, do_sample=True, temperature=0.9, top_p=0.95, seed=1234)
    first, second = generator.generate(QUESTIONS[3], **knobs), generator.generate(QUESTIONS[3], **knobs)
    assert first.text and first.text == second.text


def test_beam_search_runs(generator):
    result = generator.generate(QUESTIONS[0], max_new_tokens=8, num_beams=3)
    assert result.text.strip() and 0 < result.new_tokens <= 8


def test_streamed_pieces_add_up_to_the_greedy_text(generator):
    for messages in QUESTIONS[:2]:
        pieces = list(generator.stream(messages, max_new_tokens=14))
        assert len(pieces) > 1
        assert "".join(pieces) == generator.generate(messages, max_new_tokens=14).text


def test_batched_greedy_equals_sequential(generator):
    sequential = [generator.generate(m, max_new_tokens=14).text for m in QUESTIONS]
    before = generator.batcher.batches_run
    batched = [g.text for g in generator.generate_batch(QUESTIONS, max_new_tokens=14)]
    assert generator.batcher.batches_run == before + 1  # all four shared one generate call
    assert batched == sequential


def test_concurrent_threads_are_batched_and_match_sequential(generator):
    sequential = [generator.generate(m, max_new_tokens=10).text for m in QUESTIONS]
    results: list[str | None] = [None] * len(QUESTIONS)
    barrier = threading.Barrier(len(QUESTIONS))

    def ask(i):
        barrier.wait()
        results[i] = "".join(generator.stream(QUESTIONS[i], max_new_tokens=10))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(QUESTIONS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == sequential
    assert generator.batcher.largest_batch >= 2


def test_the_transformers_backend_gives_the_onnx_backends_greedy_answers(generator, transformers_generator):
    assert (transformers_generator.backend, transformers_generator.attention) == ("transformers", "sdpa")
    assert transformers_generator.backend_reason == "KGQA_LM_BACKEND=transformers"
    assert transformers_generator.prefixes is None
    onnx = [g.text for g in generator.generate_batch(QUESTIONS, max_new_tokens=14)]
    transformers = [g.text for g in transformers_generator.generate_batch(QUESTIONS, max_new_tokens=14)]
    assert transformers == onnx
    streamed = "".join(transformers_generator.stream(QUESTIONS[2], max_new_tokens=14))
    assert streamed == onnx[2]


def test_loading_the_gguf_file_directly(project_settings):
    gguf = assets.bundled_gguf_path()
    gen = LocalGenerator(project_settings.with_overrides(lm_path=str(gguf)), device="cpu")
    try:
        result = gen.generate(QUESTIONS[0], max_new_tokens=6)
        assert result.text.strip() and gen.model_name == gguf.name
    finally:
        gen.close()


@pytest.mark.gpu
def test_flash_and_eager_attention_give_the_same_greedy_tokens(project_settings):
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from models.lm.loader import load_lm

    tokens = {}
    for attention in ("sdpa", "eager"):
        lm = load_lm(project_settings, device="cuda", attention=attention)
        ids = lm.tokenizer.apply_chat_template(CAPITAL, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        ids = {k: v.to("cuda") for k, v in ids.items()}
        backends = [SDPBackend.FLASH_ATTENTION] if attention == "sdpa" else list(SDPBackend)
        with torch.inference_mode(), sdpa_kernel(backends):
            out = lm.model.generate(**ids, max_new_tokens=24, do_sample=False)
        tokens[attention] = out[0, ids["input_ids"].shape[1]:].tolist()
        del lm
    assert tokens["sdpa"] == tokens["eager"]


def test_a_request_arriving_mid_answer_joins_the_running_batch(generator):
    alone = generator.generate(QUESTIONS[1], max_new_tokens=10).text
    joined_before = generator.batcher.joined
    long_one = generator.submit(QUESTIONS[3], max_new_tokens=60)
    pieces = long_one.iter_pieces()
    next(pieces)  # the long answer is decoding now
    late = generator.generate(QUESTIONS[1], max_new_tokens=10)
    rest = "".join(pieces)
    assert generator.batcher.joined == joined_before + 1
    assert late.text == alone
    assert rest and long_one.new_tokens > 20  # the long answer was still going when the late one joined
