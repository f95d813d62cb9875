"""The onnxruntime decoder against transformers on the real bundled LM: same logits, same greedy tokens.

These are the checks behind ``auto`` picking it on CPU: it must compute what
``LlamaForCausalLM`` computes, alone, padded into a batch, and after a cached prefix.
"""

from __future__ import annotations

import pytest

from models.lm.onnx_llama import UnsupportedModel, llama_shape

pytestmark = pytest.mark.slow

SYSTEM = "Answer the question using only the evidence passages. Cite them like [1]. Be brief."
EVIDENCE = (
    "[1] Alabama is a state in the Southeastern region of the United States. Its capital is Montgomery, "
    "and its largest city by population and area is Huntsville.\n"
    "[2] Animal Farm is a satirical allegorical novella by George Orwell, first published in England "
    "on 17 August 1945.\n"
    "[3] Apollo 11 was the American spaceflight that first landed humans on the Moon on July 20, 1969."
)


def messages(question: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Evidence:\n{EVIDENCE}\n\nQuestion: {question}"}]


@pytest.fixture(scope="module")
def onnx(project_settings):
    from models.lm.backends import open_backend

    backend = open_backend(project_settings, batch_size=4, backend="onnx", device="cpu")
    assert backend.name == "onnx" and backend.attention == "onnxruntime"
    return backend


def prompt(onnx, question: str) -> list[int]:
    text = onnx.lm.tokenizer.apply_chat_template(messages(question), add_generation_prompt=True, tokenize=False)
    return onnx.lm.tokenizer(text, add_special_tokens=False)["input_ids"]


def greedy_onnx(onnx, ids: list[int], steps: int, prefix=None, ban_eos=False) -> tuple[list[int], object]:
    def pick(logits) -> int:
        if ban_eos:
            logits = logits.copy()
            logits[0, onnx.lm.tokenizer.eos_token_id] = float("-inf")
        return int(logits[0].argmax())

    logits, batch = onnx.decoder.prefill([ids], prefix)
    first = logits
    tokens = [pick(logits)]
    for _ in range(steps - 1):
        logits, batch = onnx.decoder.step(tokens[-1:], batch)
        tokens.append(pick(logits))
    return tokens, first


def greedy_transformers(onnx, ids: list[int], steps: int, ban_eos=False) -> tuple[list[int], object]:
    import torch

    with torch.inference_mode():
        inputs = torch.tensor([ids])
        first = onnx.lm.model(inputs).logits[0, -1].numpy()
        out = onnx.lm.model.generate(inputs, max_new_tokens=steps, min_new_tokens=steps if ban_eos else None,
                                     do_sample=False, pad_token_id=onnx.lm.tokenizer.pad_token_id)
    return out[0, len(ids):].tolist(), first


def up_to_eos(onnx, tokens: list[int]) -> list[int]:
    eos = onnx.lm.tokenizer.eos_token_id
    return tokens[:tokens.index(eos) + 1] if eos in tokens else tokens


def test_prefill_logits_and_greedy_tokens_match_transformers(onnx):
    import numpy as np

    for question in ("What is the capital of Alabama?", "Who wrote Animal Farm?"):
        ids = prompt(onnx, question)
        ours, our_logits = greedy_onnx(onnx, ids, 24)
        theirs, their_logits = greedy_transformers(onnx, ids, 24)
        assert np.abs(our_logits[0] - their_logits).max() < 1e-3
        ours, theirs = up_to_eos(onnx, ours), up_to_eos(onnx, theirs)
        decode = onnx.lm.tokenizer.decode
        assert len(ours) > 4 and ours == theirs, decode(ours) + " != " + decode(theirs)


def test_a_long_greedy_run_matches_transformers_token_for_token(onnx):
    ids = prompt(onnx, "Summarise the evidence.")
    ours, _ = greedy_onnx(onnx, ids, 40, ban_eos=True)
    theirs, _ = greedy_transformers(onnx, ids, 40, ban_eos=True)
    assert ours == theirs, onnx.lm.tokenizer.decode(ours) + " != " + onnx.lm.tokenizer.decode(theirs)


def test_rows_of_different_lengths_decode_as_they_would_alone(onnx):
    prompts = [prompt(onnx, q) for q in ("Who wrote Animal Farm?", "When did Apollo 11 land on the Moon, exactly?")]
    assert len(prompts[0]) != len(prompts[1])
    alone = [greedy_onnx(onnx, ids, 12)[0] for ids in prompts]
    logits, batch = onnx.decoder.prefill(prompts)
    together = [[int(t)] for t in logits.argmax(axis=-1)]
    for _ in range(11):
        logits, batch = onnx.decoder.step([row[-1] for row in together], batch)
        for row, token in zip(together, logits.argmax(axis=-1)):
            row.append(int(token))
    assert together == alone


def test_a_cached_prefix_changes_nothing_but_the_work(onnx):
    import numpy as np

    first, second = prompt(onnx, "Who wrote Animal Farm?"), prompt(onnx, "What is the capital of Alabama?")
    _, batch = onnx.decoder.prefill([first])
    prefix = onnx.decoder.prefix_of(first, batch, 0)
    shared = prefix.shared_length([second])
    assert shared > len(second) // 2  # instructions and evidence are shared; only the question differs
    cold, cold_logits = greedy_onnx(onnx, second, 16)
    warm, warm_logits = greedy_onnx(onnx, second, 16, prefix=prefix)
    assert np.abs(cold_logits - warm_logits).max() < 1e-3
    assert warm == cold


def test_a_batch_joined_mid_decode_goes_on_as_each_row_would_alone(onnx):
    first, second = prompt(onnx, "Who wrote Animal Farm?"), prompt(onnx, "When did Apollo 11 land on the Moon, exactly?")
    alone = [greedy_onnx(onnx, ids, 10, ban_eos=True)[0] for ids in (first, second)]
    logits, running = onnx.decoder.prefill([first])
    rows = [[int(logits[0].argmax())]]
    for _ in range(3):  # the first row is a few tokens in when the second arrives
        logits, running = onnx.decoder.step([rows[0][-1]], running)
        rows[0].append(int(logits[0].argmax()))
    logits, arriving = onnx.decoder.prefill([second])
    rows.append([int(logits[0].argmax())])
    batch = running.merge(arriving)
    assert batch.rows == 2 and batch.key_valid.shape[1] == max(len(first) + 4, len(second))
    while len(rows[1]) < 10:
        logits, batch = onnx.decoder.step([row[-1] for row in rows], batch)
        for row, token in zip(rows, logits.argmax(axis=-1)):
            row.append(int(token))
    assert rows[0][:10] == alone[0] and rows[1] == alone[1]


def test_finished_rows_leave_the_batch(onnx):
    prompts = [prompt(onnx, "Who wrote Animal Farm?"), prompt(onnx, "What is the capital of Alabama?")]
    _, batch = onnx.decoder.prefill(prompts)
    kept = batch.keep([1])
    assert kept.rows == 1 and kept.past[0].shape[0] == 1
    assert kept.next_position.tolist() == [len(prompts[1])]


def test_non_llama_configs_are_refused_with_a_reason():
    from transformers import GPT2Config, LlamaConfig

    with pytest.raises(UnsupportedModel, match="not llama-family"):
        llama_shape(GPT2Config())
    with pytest.raises(UnsupportedModel, match="biases"):
        llama_shape(LlamaConfig(attention_bias=True))
    assert llama_shape(LlamaConfig(num_attention_heads=8, num_key_value_heads=2, hidden_size=256)).head_dim == 32

