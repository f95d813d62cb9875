"""Which generator writes answers: ``make_generator`` and llama.cpp's place in the backend choice.

All of it is decided from settings and the model's file, before anything loads, so these
tests load no model.
"""

from __future__ import annotations

import pytest

from kgqa.assets import bundled_gguf_path
from kgqa.settings import Settings
from models.lm.backends import BackendChoice, BackendUnavailable, choose_backend, llamacpp_choice
from models.lm.factory import make_generator
from models.lm.llamacpp import LlamaCppGenerator
from models.lm.local_generator import LocalGenerator
from models.lm.remote import OpenAIGenerator


@pytest.fixture
def hf_folder(tmp_path):
    folder = tmp_path / "hf-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return str(folder)


def test_auto_runs_a_gguf_on_cpu_on_llamacpp_and_says_why():
    choice = choose_backend("auto", None, "m.gguf", gguf=True, device="cpu")
    assert choice.backend == "llamacpp" and choice.reason.startswith("auto: a GGUF on cpu")
    # the same file on a GPU, or a Hugging Face folder, keeps the onnx / transformers choice
    assert choose_backend("auto", "it runs on cpu only and the model is on cuda", "m.gguf", gguf=True,
                          device="cuda").backend == "transformers"
    assert choose_backend("auto", None, "folder").backend == "onnx"


def test_llamacpp_asked_for_runs_gguf_on_cpu_only_and_never_substitutes():
    assert choose_backend("llamacpp", None, "m.gguf", gguf=True) == BackendChoice("llamacpp", "KGQA_LM_BACKEND=llamacpp")
    with pytest.raises(BackendUnavailable, match="KGQA_LM_BACKEND=llamacpp runs GGUF files; folder is not one"):
        choose_backend("llamacpp", None, "folder")
    with pytest.raises(BackendUnavailable, match="runs on cpu, not cuda"):
        choose_backend("llamacpp", None, "m.gguf", gguf=True, device="cuda")


def test_llamacpp_choice_reads_the_setting_and_the_file(tmp_path, hf_folder):
    gguf = str(bundled_gguf_path())
    settings = Settings(data_dir=tmp_path, device="cpu")
    assert llamacpp_choice(settings.with_overrides(lm_path=gguf)).backend == "llamacpp"
    assert llamacpp_choice(settings.with_overrides(lm_path=gguf, lm_backend="onnx")) is None
    assert llamacpp_choice(settings.with_overrides(lm_path=hf_folder)) is None
    with pytest.raises(BackendUnavailable, match="runs GGUF files"):
        llamacpp_choice(settings.with_overrides(lm_path=hf_folder, lm_backend="llamacpp"))


def test_make_generator_picks_without_loading_anything(tmp_path, hf_folder):
    base = Settings(data_dir=tmp_path, device="cpu")
    remote = make_generator(base.with_overrides(lm_url="http://127.0.0.1:9/v1", lm_path=str(bundled_gguf_path())))
    assert isinstance(remote, OpenAIGenerator) and remote._client is None
    local_gguf = make_generator(base.with_overrides(lm_path=str(bundled_gguf_path())))
    assert isinstance(local_gguf, LlamaCppGenerator) and local_gguf._engine is None
    assert local_gguf.backend_reason.startswith("auto:")
    assert isinstance(make_generator(base.with_overrides(lm_path=hf_folder)), LocalGenerator)
    assert isinstance(make_generator(base.with_overrides(lm_path=str(bundled_gguf_path()), lm_backend="onnx")),
                      LocalGenerator)


def test_local_generator_refuses_llamacpp_in_one_line(tmp_path):
    settings = Settings(data_dir=tmp_path, lm_path=str(bundled_gguf_path()), lm_backend="llamacpp")
    with pytest.raises(BackendUnavailable, match="LlamaCppGenerator"):
        LocalGenerator(settings).warm_up()


def test_the_remote_settings_read_their_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KGQA_LM_URL", "http://gpu-host:8000/v1")
    monkeypatch.setenv("KGQA_LM_MODEL", "Qwen/Qwen2.5-7B-Instruct")
    monkeypatch.setenv("KGQA_LM_API_KEY", "sk-secret")
    monkeypatch.setenv("KGQA_LM_BACKEND", "llamacpp")
    settings = Settings(data_dir=tmp_path)
    assert (settings.lm_url, settings.lm_model, settings.lm_backend) == (
        "http://gpu-host:8000/v1", "Qwen/Qwen2.5-7B-Instruct", "llamacpp")
    assert "sk-secret" not in repr(settings)
    assert (settings.lm_timeout_s, settings.lm_retries) == (120.0, 2)
