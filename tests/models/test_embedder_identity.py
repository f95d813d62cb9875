"""Embedder identity: a content fingerprint of the model files, cached by (path, size, mtime), and the width
known without loading the model where the ONNX export can say it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import models.embedding.identity as identity
from kgqa.assets import resolve_embedder
from kgqa.settings import Settings
from models.embedding.embedder import Embedder
from models.embedding.identity import EmbedderIdentity, model_files, model_fingerprint
from models.embedding.onnx_export import exported_dim


def tiny_model(folder: Path, *, modules: list[dict] | None = None) -> Path:
    """The files of a sentence-transformers folder, with a few bytes each instead of real weights."""
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\x00weights\x01" * 100)
    (folder / "config.json").write_text(json.dumps({"hidden_size": 8, "model_type": "bert"}))
    (folder / "tokenizer.json").write_text('{"model": {"vocab": {"[PAD]": 0, "a": 1}}}')
    (folder / "vocab.txt").write_text("[PAD]\na\n")
    (folder / "README.md").write_text("# tiny\n")
    (folder / "modules.json").write_text(json.dumps(modules or [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 8, "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}))
    return folder


@pytest.fixture(autouse=True)
def fresh_memory(monkeypatch):
    """Each test starts with an empty in-process digest cache, so it sees what a new process sees."""
    monkeypatch.setattr(identity, "_MEMORY", {})


def test_fingerprint_covers_weights_configs_tokenizer_and_modules_only(tmp_path):
    model = tiny_model(tmp_path / "model")
    assert [p.relative_to(model).as_posix() for p in model_files(model)] == [
        "1_Pooling/config.json", "config.json", "model.safetensors", "modules.json", "tokenizer.json", "vocab.txt"]
    first = model_fingerprint(model)
    assert len(first) == 64 and model_fingerprint(model) == first

    copy = tmp_path / "copy"
    shutil.copytree(model, copy)
    assert model_fingerprint(copy) == first  # the same files elsewhere are the same model
    (copy / "README.md").write_text("# renamed\n")
    assert model_fingerprint(copy) == first  # documentation does not change the vectors
    for name in ("vocab.txt", "1_Pooling/config.json", "model.safetensors"):
        changed = tmp_path / f"changed-{name.replace('/', '-')}"
        shutil.copytree(model, changed)
        with open(changed / name, "ab") as handle:
            handle.write(b" ")
        assert model_fingerprint(changed) != first, name


def test_digests_are_cached_on_disk_by_path_size_and_mtime(tmp_path, monkeypatch):
    model = tiny_model(tmp_path / "model")
    cache = tmp_path / "models" / "embedder-fingerprints.json"
    fingerprint = model_fingerprint(model, cache)
    stored = json.loads(cache.read_text())["files"]
    assert set(stored) == {str(p.resolve()) for p in model_files(model)}

    def no_reading(path):
        raise AssertionError(f"{path} was hashed again")

    monkeypatch.setattr(identity, "_sha256_file", no_reading)
    monkeypatch.setattr(identity, "_MEMORY", {})  # a new process: only the file cache is left
    assert model_fingerprint(model, cache) == fingerprint

    vocab = model / "vocab.txt"
    stat = vocab.stat()
    os.utime(vocab, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # touched: hashed again
    with pytest.raises(AssertionError, match="vocab.txt was hashed again"):
        model_fingerprint(model, cache)


def test_unreadable_cache_is_ignored(tmp_path):
    model = tiny_model(tmp_path / "model")
    cache = tmp_path / "fingerprints.json"
    cache.write_text("{not json")
    assert model_fingerprint(model, cache) == model_fingerprint(model)
    assert json.loads(cache.read_text())["version"] == identity.FINGERPRINT_VERSION  # rewritten


def test_identity_record_validates_and_reads():
    record = EmbedderIdentity(name="all-MiniLM-L6-v2", dim=384, fingerprint="ab12" * 16)
    assert str(record) == "all-MiniLM-L6-v2 (384-d, fingerprint ab12ab12ab12)"
    assert EmbedderIdentity.model_validate_json(record.model_dump_json()) == record
    assert record.same_vectors(record.model_copy(update={"name": "/elsewhere/copy"}))
    assert not record.same_vectors(record.model_copy(update={"dim": 768}))
    with pytest.raises(ValueError):
        EmbedderIdentity(name="x", dim=0, fingerprint="ab12" * 16)
    with pytest.raises(ValueError):
        EmbedderIdentity(name="x", dim=8, fingerprint="not hex")


def test_export_width_comes_from_the_source_config_and_only_mean_pooling_exports(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", embedder_path=str(tiny_model(tmp_path / "mean")))
    assert exported_dim(settings) == 8
    dense = tiny_model(tmp_path / "dense", modules=[
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
    ])
    with pytest.raises(ValueError, match="Dense module"):
        exported_dim(settings.with_overrides(embedder_path=str(dense)))


def test_a_configured_embedder_is_named_by_its_folder_and_known_without_loading(tmp_path):
    folder = tiny_model(tmp_path / "mine")
    embedder = Embedder(Settings(data_dir=tmp_path / "data", embedder_path=str(folder), device="cpu"))
    assert embedder.identity == EmbedderIdentity(name=str(folder), dim=8, fingerprint=model_fingerprint(folder))
    assert not embedder.ready


def test_bundled_minilm_identity_is_384_d_and_stable_without_loading(tmp_path, project_settings):
    """Two embedders on a models folder with no export and no cache: the same identity, nothing loaded."""
    settings = project_settings.with_overrides(data_dir=tmp_path / "data", models_dir=tmp_path / "models", device="cpu")
    first, second = Embedder(settings), Embedder(settings)
    assert first.identity.name == "all-MiniLM-L6-v2" and first.identity.dim == 384
    identity._MEMORY.clear()  # the second reads the digests from the cache file, as a new process would
    assert second.identity == first.identity and (tmp_path / "models" / identity.FINGERPRINT_CACHE_FILE).is_file()
    assert not first.ready and not second.ready
    assert first.identity.fingerprint == model_fingerprint(resolve_embedder(settings))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "onnx-int8"])
def test_loaded_minilm_reports_the_identity_it_promised(backend, project_settings):
    """Loading the real model (sentence-transformers' own dimension, or the ONNX graph's) agrees with the
    identity known before loading, and a second load gives the same identity."""
    settings = project_settings.with_overrides(device="cpu")
    promised = Embedder(settings, backend=backend).identity
    loaded = Embedder(settings, backend=backend)
    loaded.warm_up()
    assert loaded.backend == backend and loaded.dim == 384
    assert loaded.identity == promised and loaded.encode_query("width").shape == (384,)
    again = Embedder(settings, backend=backend)
    again.warm_up()
    assert again.identity == loaded.identity
