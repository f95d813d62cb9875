"""``LlamaCppGenerator``: the bundled GGUF on llama.cpp in process: streaming, stops, concurrent requests, cancellation."""

from __future__ import annotations

import threading
import time

import pytest

from kgqa.assets import AssetMissing, bundled_gguf_path
from kgqa.settings import Settings
from models.lm.llamacpp import LlamaCppGenerator

QUESTIONS = ["What is the capital of France?", "Who wrote Animal Farm?", "Name a large ocean."]
COUNTING = [{"role": "user", "content": "Count from 1 to 500, separated by commas."}]


def ask(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


@pytest.fixture(scope="module")
def llamacpp(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("llamacpp"), lm_path=str(bundled_gguf_path()), batch_size=3)
    generator = LlamaCppGenerator(settings)
    generator.warm_up()
    yield generator
    generator.close()


def test_a_hugging_face_folder_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "hf-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(AssetMissing, match="llama.cpp runs GGUF files; KGQA_LM_PATH=.*is a Hugging Face folder"):
        LlamaCppGenerator(Settings(data_dir=tmp_path, lm_path=str(folder))).warm_up()


@pytest.mark.slow
def test_streamed_pieces_add_up_to_the_generated_text(llamacpp):
    whole = llamacpp.generate(ask(QUESTIONS[0]), max_new_tokens=20)
    pieces = list(llamacpp.stream(ask(QUESTIONS[0]), max_new_tokens=20))
    assert len(pieces) > 3 and "".join(pieces) == whole.text
    assert whole.new_tokens == 20 and whole.finish_reason == "length" and whole.prompt_tokens > 10
    assert 0 < whole.first_token_s < whole.total_s
    assert (llamacpp.backend, llamacpp.device, llamacpp.model_name) == ("llamacpp", "cpu", bundled_gguf_path().name)


@pytest.mark.slow
def test_token_counts_are_the_models_own_tokenizer(llamacpp, lm_path):
    from kgqa.assets import resolve_lm
    from models.lm.loader import load_tokenizer

    tokenizer = load_tokenizer(resolve_lm(Settings(lm_path=lm_path)))  # the bundled model's, converted or not
    text = "Montgomery is the capital of Alabama; Huntsville is its largest city."
    assert llamacpp.count_tokens(text) == len(tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.mark.slow
def test_stop_strings_end_the_answer_before_them(llamacpp):
    full = llamacpp.generate(ask(QUESTIONS[0]), max_new_tokens=20).text
    stop = full.split()[2]
    cut = llamacpp.generate(ask(QUESTIONS[0]), max_new_tokens=20, stop=[stop])
    assert cut.text == full[: full.index(stop)] and cut.finish_reason == "stop"


@pytest.mark.slow
def test_a_fixed_length_runs_past_eos_and_a_partial_minimum_is_refused(llamacpp):
    assert llamacpp.generate(ask("Say hi."), max_new_tokens=12, min_new_tokens=12).new_tokens == 12
    with pytest.raises(ValueError, match="min_new_tokens"):
        llamacpp.generate(ask("Say hi."), max_new_tokens=12, min_new_tokens=3)


@pytest.mark.slow
def test_concurrent_requests_decode_together(llamacpp):
    """Three requests on three slots all start before any ends: they share decoding steps, not a queue.

    Their greedy answers need not equal those decoded alone: llama.cpp's kernels for a batch
    of rows sum in another order than for one row, and a near tie can flip a token.
    """
    together = llamacpp.generate_batch([ask(q) for q in QUESTIONS], max_new_tokens=16)
    assert all(g.text.strip() and g.new_tokens == 16 for g in together)
    assert max(g.first_token_s for g in together) < min(g.total_s for g in together)
    from_threads: dict[int, str] = {}

    def answer(i: int) -> None:
        from_threads[i] = llamacpp.generate(ask(QUESTIONS[i]), max_new_tokens=16).text

    threads = [threading.Thread(target=answer, args=(i,)) for i in range(len(QUESTIONS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(from_threads) == len(QUESTIONS) and all(from_threads.values())


@pytest.mark.slow
def test_closing_a_stream_frees_its_slot(tmp_path):
    generator = LlamaCppGenerator(Settings(data_dir=tmp_path, lm_path=str(bundled_gguf_path())), slots=1)
    stream = generator.stream(COUNTING, max_new_tokens=400)  # a long answer on the only slot
    assert "".join(next(stream) for _ in range(3))
    stream.close()
    started = time.perf_counter()
    assert generator.generate(ask(QUESTIONS[0]), max_new_tokens=4).text
    assert time.perf_counter() - started < 5  # not queued behind the rest of 400 tokens
    generator.close()


@pytest.mark.slow
def test_a_request_given_up_during_its_prefill_stops_before_its_first_token(tmp_path):
    generator = LlamaCppGenerator(Settings(data_dir=tmp_path, lm_path=str(bundled_gguf_path())), slots=1)
    long_prompt = ask("Tell me about the history of the world. " * 150)  # ~1,200 tokens: several prefill chunks
    stream = generator.stream(long_prompt, max_new_tokens=50)
    deadline = time.monotonic() + 60
    while stream._chunks.empty() and time.monotonic() < deadline:  # the role chunk: its prefill has begun
        time.sleep(0.005)
    stream.abandon()  # before its prefill ends: the engine's next callback (the next chunk's progress) stops it
    stream._thread.join(120)
    assert not stream._thread.is_alive()
    texts = []
    while not stream._chunks.empty():
        _, chunk = stream._chunks.get()
        if isinstance(chunk, dict):
            texts += [c.get("delta", {}).get("content") or "" for c in chunk.get("choices", [])]
    assert not "".join(texts)  # no token was decoded for it
    generator.close()
