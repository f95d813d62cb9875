"""Which backend decodes: ``KGQA_LM_BACKEND`` and what ``auto`` makes of the model and device.

The choice is a plain function of the setting and of why (if at all) the onnx decoder
refuses the model, so most of it is tested without loading a model; the slow tests run
a tiny random GPT-2 (an architecture the onnx decoder refuses) through the generator.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kgqa.errors import KgqaError
from kgqa.settings import Settings
from models.lm.backends import BackendChoice, BackendUnavailable, choose_backend, onnx_refusal


def test_auto_picks_onnx_when_the_decoder_can_run_the_model_and_says_why():
    choice = choose_backend("auto", None, "smollm2")
    assert choice.backend == "onnx" and choice.reason.startswith("auto:")


def test_auto_falls_back_to_transformers_with_the_refusal_as_its_reason():
    choice = choose_backend("auto", "model_type 'gpt2' is not llama-family", "tiny-gpt2")
    assert choice == BackendChoice("transformers", "auto: the onnx decoder cannot run it (model_type 'gpt2' is not llama-family)")


def test_onnx_asked_for_explicitly_never_substitutes():
    assert choose_backend("onnx", None, "smollm2") == BackendChoice("onnx", "KGQA_LM_BACKEND=onnx")
    with pytest.raises(BackendUnavailable) as info:
        choose_backend("onnx", "it runs fp32 weights, not bfloat16", "smollm2")
    message = str(info.value)
    assert isinstance(info.value, KgqaError) and "\n" not in message
    assert "KGQA_LM_BACKEND=onnx cannot run smollm2: it runs fp32 weights, not bfloat16" in message


def test_transformers_asked_for_runs_transformers_even_where_onnx_could():
    assert choose_backend("transformers", None, "smollm2").backend == "transformers"
    assert choose_backend("transformers", "it runs on cpu only and the model is on cuda", "m").backend == "transformers"
    with pytest.raises(ValueError, match="unknown LM backend"):
        choose_backend("turbo", None, "m")


def test_onnx_refusal_reads_device_dtype_and_architecture():
    from transformers import GPT2Config, LlamaConfig

    llama = LlamaConfig(num_attention_heads=4, num_key_value_heads=2, hidden_size=64, num_hidden_layers=1)
    assert onnx_refusal(llama, device="cpu", dtype="float32") is None
    assert "cpu only" in onnx_refusal(llama, device="cuda", dtype="float32")
    assert "fp32" in onnx_refusal(llama, device="cpu", dtype="bfloat16")
    assert "not llama-family" in onnx_refusal(GPT2Config(), device="cpu", dtype="float32")
    assert "biases" in onnx_refusal(LlamaConfig(attention_bias=True), device="cpu", dtype="float32")


def test_the_setting_reads_kgqa_lm_backend_and_refuses_other_values(monkeypatch):
    monkeypatch.delenv("KGQA_LM_BACKEND", raising=False)
    assert Settings().lm_backend == "auto"
    monkeypatch.setenv("KGQA_LM_BACKEND", "transformers")
    assert Settings().lm_backend == "transformers"
    monkeypatch.setenv("KGQA_LM_BACKEND", "fast")
    with pytest.raises(ValidationError):
        Settings()


@pytest.fixture(scope="module")
def tiny_gpt2(project_settings, tmp_path_factory):
    """A random one-layer GPT-2 with the bundled tokenizer: real transformers, an architecture onnx refuses."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from kgqa.assets import resolve_lm
    from models.lm.loader import load_tokenizer

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer = load_tokenizer(resolve_lm(project_settings))
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=512, n_embd=32, n_layer=1, n_head=2,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return project_settings.with_overrides(lm_path=str(folder))


@pytest.mark.slow
def test_auto_runs_an_architecture_onnx_refuses_on_transformers_and_reports_it(tiny_gpt2):
    from models.lm.generator import Generator
    from models.lm.local_generator import LocalGenerator

    generator = LocalGenerator(tiny_gpt2, device="cpu")
    try:
        result = generator.generate([{"role": "user", "content": "Hello?"}], max_new_tokens=4, min_new_tokens=4)
        assert result.new_tokens == 4
        assert isinstance(generator, Generator)
        assert (generator.backend, generator.device, generator.attention) == ("transformers", "cpu", "sdpa")
        assert "not llama-family" in generator.backend_reason and generator.prefixes is None
    finally:
        generator.close()


@pytest.mark.slow
def test_onnx_asked_for_an_architecture_it_refuses_is_one_clear_error(tiny_gpt2):
    from models.lm.local_generator import LocalGenerator

    with pytest.raises(BackendUnavailable, match="KGQA_LM_BACKEND=onnx cannot run .*not llama-family"):
        LocalGenerator(tiny_gpt2.with_overrides(lm_backend="onnx")).warm_up()
