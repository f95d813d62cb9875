"""Embedder: the real model gives normalised 384-d vectors; the int8 ONNX path agrees with plain torch."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from kgqa.settings import Settings
from models.embedding.embedder import Embedder, document_text, prepare

QUESTIONS = [
    "What is the capital of Alabama?",
    "Who wrote Animal Farm?",
    "When did Apollo 11 land on the Moon?",
    "Where was Albert Einstein born?",
    "What did Aristotle teach?",
    "Who assassinated Abraham Lincoln?",
    "What language is spoken in Algeria?",
    "What is anarchism?",
]


def test_document_text_prefixes_title_and_section():
    assert document_text("Alabama", "History > Statehood", " It joined in 1819. ") == (
        "Alabama > History > Statehood\nIt joined in 1819.")
    assert document_text("Alabama", "", "Lead text.") == "Alabama\nLead text."
    assert document_text("", "", "Bare.") == "Bare."


def test_constructor_loads_nothing(project_settings: Settings):
    embedder = Embedder(project_settings)
    assert not embedder.ready and embedder.backend is None and embedder.dim == 384


@pytest.fixture(scope="session")
def export_settings(tmp_path_factory: pytest.TempPathFactory, project_settings: Settings) -> Settings:
    """A fresh data folder, so the session exercises the ONNX export from the local model folder."""
    return project_settings.with_overrides(data_dir=tmp_path_factory.mktemp("embedder") / "data",
                                           device="cpu")


@pytest.fixture(scope="session")
def fast(export_settings: Settings) -> Embedder:
    embedder = Embedder(export_settings)
    embedder.warm_up()
    return embedder


@pytest.fixture(scope="session")
def plain(project_settings: Settings) -> Embedder:
    embedder = Embedder(project_settings.with_overrides(device="cpu"), backend="torch")
    embedder.warm_up()
    return embedder


@pytest.fixture(scope="session")
def real_passages(sample_kb: Settings) -> list[str]:
    """64 passages of the ingested sample dump, embedded as ingestion embeds them."""
    from sqlalchemy import select

    from kg.store import Passage, make_engine, session_factory

    with session_factory(make_engine(sample_kb.database_url))() as session:
        rows = session.scalars(select(Passage).order_by(Passage.vector_id).limit(400)).all()
    assert len(rows) >= 64, "the sample KB should hold hundreds of passages"
    return [document_text(p.title, p.section, p.text) for p in rows[::len(rows) // 64][:64]]


@pytest.mark.slow
def test_export_is_built_once_under_models_dir(fast: Embedder, export_settings: Settings):
    assert fast.backend == "onnx-int8"
    exports = list(export_settings.models_dir.iterdir())
    assert len(exports) == 1 and exports[0].name.startswith("embedder-onnx-")  # no leftover .part folder
    assert {"manifest.json", "model.onnx", "model_int8.onnx"} <= {p.name for p in exports[0].iterdir()}
    assert prepare(export_settings) == exports[0] / "model_int8.onnx"  # already there: no rebuild
    model = fast._model
    fast.warm_up()
    assert fast._model is model


@pytest.mark.slow
def test_fp32_precision_runs_the_unquantised_export(fast: Embedder, plain: Embedder, export_settings: Settings,
                                                     real_passages: list[str]):
    fp32 = Embedder(export_settings.with_overrides(embedder_precision="fp32"))
    fp32.warm_up()
    assert fp32.backend == "onnx" and fast.backend == "onnx-int8"
    reference = plain.encode_documents(real_passages[:16])
    agree_fp32 = (fp32.encode_documents(real_passages[:16]) * reference).sum(axis=1)
    agree_int8 = (fast.encode_documents(real_passages[:16]) * reference).sum(axis=1)
    assert agree_fp32.min() > 0.9999 and agree_fp32.mean() > agree_int8.mean()


def test_an_unknown_embedder_precision_is_refused(project_settings: Settings):
    with pytest.raises(ValueError, match="embedder_precision"):
        project_settings.with_overrides(embedder_precision="fp16")


@pytest.mark.slow
@pytest.mark.parametrize("which", ["fast", "plain"])
def test_real_embedder_gives_one_normalised_vector(which: str, request: pytest.FixtureRequest):
    embedder: Embedder = request.getfixturevalue(which)
    vector = embedder.encode_query("What is the capital of Alabama?")
    assert vector.shape == (384,) and vector.dtype == np.float32
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    documents = embedder.encode_documents(["Montgomery is the capital of Alabama.", "Paris is in France."])
    assert documents.shape == (2, 384) and documents.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(documents, axis=1), 1.0, atol=1e-4)
    assert float(documents[0] @ vector) > float(documents[1] @ vector)  # it means something
    assert embedder.encode_documents([]).shape == (0, 384)
    with pytest.raises(TypeError):
        embedder.encode_documents("one string")
    with pytest.raises(TypeError):
        embedder.encode_query(["a list"])


@pytest.mark.slow
def test_fast_backend_agrees_with_plain_torch(fast: Embedder, plain: Embedder, real_passages: list[str]):
    fast_docs = fast.encode_documents(real_passages)
    plain_docs = plain.encode_documents(real_passages)
    cosine = (fast_docs * plain_docs).sum(axis=1)
    assert cosine[:16].min() >= 0.99, cosine[:16]
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.98, (cosine.mean(), cosine.min())

    fast_queries = np.stack([fast.encode_query(q) for q in QUESTIONS])
    plain_queries = np.stack([plain.encode_query(q) for q in QUESTIONS])
    assert ((fast_queries * plain_queries).sum(axis=1) >= 0.98).all()

    k = 10
    fast_top = np.argsort(-(fast_queries @ fast_docs.T), axis=1)[:, :k]
    plain_top = np.argsort(-(plain_queries @ plain_docs.T), axis=1)[:, :k]
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(fast_top, plain_top)])
    assert overlap >= 0.95, overlap


@pytest.mark.slow
@pytest.mark.parametrize("which", ["fast", "plain"])
def test_a_vector_does_not_depend_on_what_else_is_encoded(which: str, real_passages: list[str],
                                                            request: pytest.FixtureRequest):
    """Bit for bit: alone, in input order, reversed, shuffled or split, a passage gets the same vector,
    and a query is encoded exactly as the same text as a passage (a crash repair batches differently)."""
    embedder: Embedder = request.getfixturevalue(which)
    texts = real_passages[:24] if which == "fast" else real_passages[:8]
    together = embedder.encode_documents(texts)
    alone = np.stack([embedder.encode_query(t) for t in texts])
    shuffle = np.random.default_rng(0).permutation(len(texts))
    shuffled = np.empty_like(together)
    shuffled[shuffle] = embedder.encode_documents([texts[i] for i in shuffle])
    half = len(texts) // 2
    split = np.concatenate([embedder.encode_documents(texts[half:]), embedder.encode_documents(texts[:half])])
    for other in (alone, embedder.encode_documents(texts[::-1])[::-1], shuffled, np.roll(split, half, axis=0)):
        assert np.array_equal(together, other), np.abs(together - other).max()


@pytest.mark.slow
def test_broken_fast_backend_falls_back_to_torch(project_settings: Settings, monkeypatch, caplog):
    import models.embedding.onnx_export as onnx_export

    def broken(*_args, **_kwargs) -> Path:
        raise RuntimeError("exporter unavailable")

    monkeypatch.setattr(onnx_export, "prepare_onnx_model", broken)
    embedder = Embedder(project_settings.with_overrides(device="cpu"))
    with caplog.at_level(logging.WARNING, logger="models.embedding.embedder"):
        embedder.warm_up()
    assert embedder.backend == "torch"
    assert "falling back to torch" in caplog.text and "exporter unavailable" in caplog.text
    assert embedder.encode_query("still works").shape == (384,)

    strict = Embedder(project_settings.with_overrides(device="cpu"), backend="onnx-int8")
    with pytest.raises(RuntimeError, match="exporter unavailable"):
        strict.warm_up()


class _RecordingSentenceTransformer:
    """Stands in for sentence-transformers on a CUDA machine: records how it is loaded and called."""

    calls: dict = {}

    def __init__(self, folder: str, device: str, local_files_only: bool) -> None:
        self.calls.clear()
        self.calls["device"] = device

    def half(self):
        self.calls["half"] = True
        return self

    def get_sentence_embedding_dimension(self) -> int:
        return 384

    def encode(self, texts, batch_size, **_options):
        self.calls["batch_size"] = batch_size
        return np.full((len(texts), 384), 384 ** -0.5, dtype=np.float32)


@pytest.mark.parametrize(("device", "half", "batch_size"), [("cuda", True, 256), ("cpu", None, 1)])
def test_torch_backend_runs_fp16_large_batches_on_cuda_only(monkeypatch, project_settings: Settings,
                                                            device, half, batch_size):
    import sentence_transformers

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", _RecordingSentenceTransformer)
    embedder = Embedder(project_settings.with_overrides(device=device), backend="torch")
    vectors = embedder.encode_documents(["one passage", "another passage"])
    assert vectors.shape == (2, 384) and embedder.device == device and embedder.batch_size == batch_size
    assert _RecordingSentenceTransformer.calls == {"device": device, "batch_size": batch_size,
                                                   **({"half": True} if half else {})}


def test_onnx_backend_runs_on_cpu_one_text_at_a_time(project_settings: Settings):
    embedder = Embedder(project_settings)
    embedder.warm_up()
    assert embedder.backend == "onnx-int8" and embedder.device == "cpu" and embedder.batch_size == 1


@pytest.mark.gpu
def test_cuda_fp16_batches_agree_with_cpu_vectors(project_settings: Settings):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    texts = [document_text("Alabama", "", q) for q in QUESTIONS] * 40  # several GPU batches of mixed length
    gpu = Embedder(project_settings.with_overrides(device="cuda"), backend="torch").encode_documents(texts)
    cpu = Embedder(project_settings.with_overrides(device="cpu"), backend="torch").encode_documents(texts)
    assert np.min(np.sum(gpu * cpu, axis=1)) > 0.999
