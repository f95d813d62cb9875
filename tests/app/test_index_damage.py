"""A damaged index file never becomes an HTTP 500, a leaked path or a dead process.

Fast tests serve a tiny knowledge base whose engine loads the real index files
(retrieval only); the slow ones run the real engine on a copy of the sample
knowledge base under waitress, damaging files before the start and under the running server.
"""

from __future__ import annotations

import shutil

import pytest
import requests

from kg import index_files
from retrieval.knowledge_base import KnowledgeBase
from tests.helpers.app_fakes import FakeEngine, make_app
from tests.helpers.app_live import live_server
from tests.helpers.index_damage import KINDS, damage, pristine  # noqa: F401 (fixture)
from tests.helpers.tiny_kb import HashingEmbedder

QUESTION = {"question": "What is the capital of Alabama?"}
CHAT = {"model": "kgqa", "messages": [{"role": "user", "content": "What is the capital of Alabama?"}]}


class IndexEngine(FakeEngine):
    """The fake engine's answers, after a warm-up that loads the knowledge base's index files and asks that
    read them."""

    def __init__(self, settings):
        super().__init__()
        self.kb = KnowledgeBase(settings, embedder=HashingEmbedder())

    def warm_up(self) -> None:
        self.kb.warm_up()
        super().warm_up()

    def ask(self, question: str, *, k=None, history=None):
        assert self.kb.sparse.search(question, 3) and self.kb.linker.link(question) is not None
        return super().ask(question, k=k, history=history)


def served(pristine, tmp_path, name: str | None = None, kind: str = "truncated"):
    shutil.copytree(pristine.data_dir, tmp_path / "data")
    settings = pristine.with_overrides(data_dir=tmp_path / "data")
    if name is not None:
        damage(settings.index_dir / name, kind)
    app = make_app(settings.data_dir, IndexEngine(settings), warm=False, rate_limit_per_minute=0)
    app.extensions["kgqa_runtime"].wait_ready(30)
    return app.test_client(), settings


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["passages.faiss", "passages.faiss.json"])
def test_a_damaged_vector_index_at_start_is_a_503_naming_the_file(pristine, tmp_path, name, kind):
    client, settings = served(pristine, tmp_path, name, kind)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    error = ready.get_json()["error"]
    assert error["code"] == "index_damaged" and error["message"].startswith(f"index/{name} ")
    assert "kgqa kg repair" in error["message"]
    for response in (client.post("/api/v1/ask", json=QUESTION), client.post("/v1/chat/completions", json=CHAT),
                     client.post("/api/v1/ask", json={**QUESTION, "stream": True})):
        assert response.status_code == 503, response.get_data(as_text=True)
        body = response.get_data(as_text=True)
        assert str(settings.data_dir) not in body and "Error in" not in body and "faiss::" not in body


@pytest.mark.parametrize("name", ["bm25/indices.csc.index.npy", "bm25/data.csc.index.npy", "links/indices.npy",
                                  "bm25/stamp.json", "manifest.json"])
def test_a_damaged_bm25_or_link_file_at_start_is_rebuilt_and_questions_are_answered(pristine, tmp_path, name):
    client, settings = served(pristine, tmp_path, name, "random start")
    assert client.get("/readyz").status_code == 200
    for _ in range(3):
        assert client.post("/api/v1/ask", json=QUESTION).status_code == 200
    assert not index_files.damaged(settings.index_dir)


# --- the real engine on a copy of the sample knowledge base ---------------------------------------------------------


def sample_copy(sample_kb, tmp_path):
    """The sample KB's store and index copied (the models stay where they are: they are only read)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy2(sample_kb.data_dir / "kgqa.db", data_dir / "kgqa.db")
    shutil.copytree(sample_kb.index_dir, data_dir / "index", ignore=shutil.ignore_patterns("*.lock", ".*"))
    settings = sample_kb.with_overrides(data_dir=data_dir, models_dir=sample_kb.models_dir, rate_limit_per_minute=0)
    index_files.stamp(settings.index_dir)
    return settings


def ask_status(url: str) -> int:
    return requests.post(f"{url}/api/v1/ask", json={"question": "Who wrote Animal Farm?"}, timeout=120).status_code


@pytest.mark.slow
def test_every_index_file_cut_short_under_the_running_server_leaves_it_answering(sample_kb, tmp_path):
    """The SIGBUS case: a memory-mapped file truncated in place kills the process at its next read."""
    settings = sample_copy(sample_kb, tmp_path)
    with live_server(settings, ready_timeout=300) as url:
        assert ask_status(url) == 200
        for path in index_files.index_files(settings.index_dir):
            path.open("r+b").truncate(0)
        (settings.index_dir / index_files.MANIFEST).write_bytes(b"")
        statuses = [ask_status(url) for _ in range(3)]
        statuses += [requests.post(f"{url}/api/v1/ask", json={"question": question}, timeout=120).status_code
                     for question in ("What is the capital of Alabama?", "Where was Albert Einstein born?")]
        assert statuses == [200] * 5
        assert requests.get(f"{url}/readyz", timeout=10).status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize("name, kind, status", [
    ("passages.faiss", "truncated", 503), ("passages.faiss.json", "random start", 503),
    ("bm25/indices.csc.index.npy", "random start", 200)])
def test_the_issue_s_damaged_files_at_start(sample_kb, tmp_path, name, kind, status):
    settings = sample_copy(sample_kb, tmp_path)
    damage(settings.index_dir / name, kind)
    from app import create_app

    app = create_app(settings)
    app.extensions["kgqa_runtime"].wait_ready(300)
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == status
    if status == 503:
        message = ready.get_json()["error"]["message"]
        assert message.startswith(f"index/{name} ") and str(settings.data_dir) not in message
        assert "Error in" not in message
    statuses = [client.post("/api/v1/ask", json={"question": "Who wrote Animal Farm?"}).status_code for _ in range(4)]
    assert statuses == [status] * 4
