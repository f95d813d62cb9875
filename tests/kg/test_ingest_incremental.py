"""Idempotence, revision updates, recovery from a SIGKILLed run, and every bad input of the issue.

Runs on subsets of the real sample dump (``limit``) and on tiny hand-written dumps;
one warmed embedder is shared so only the code under test is repeated.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from kg.errors import DumpError
from kg.ingest import ingest_dump
from kgqa.settings import Settings
from tests.helpers.kg_dumps import assert_consistent, page_xml, snapshot, write_dump

pytestmark = pytest.mark.slow
SUBSET = 45  # pages of the sample: three long articles and their neighbouring redirects


@pytest.fixture(scope="module")
def embedder(sample_kb):
    from models.embedding.embedder import Embedder

    model = Embedder(sample_kb)
    model.warm_up()
    return model


def fresh_settings(tmp_path: Path, sample_kb: Settings) -> Settings:
    """An empty data folder that reuses the sample KB's prepared embedder files."""
    settings = sample_kb.with_overrides(data_dir=tmp_path / "data")
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "models").symlink_to(sample_kb.models_dir.resolve(), target_is_directory=True)
    return settings


@pytest.fixture(scope="module")
def subset_kb(tmp_path_factory, sample_kb, sample_dump, embedder) -> tuple[Settings, dict]:
    settings = fresh_settings(tmp_path_factory.mktemp("subset"), sample_kb)
    summary = ingest_dump(settings, sample_dump, limit=SUBSET, progress=False, workers=1, embedder=embedder)
    assert summary.pages > 0 and summary.redirects > 0
    return settings, snapshot(settings)


def test_reingest_changes_nothing(subset_kb, sample_dump, embedder):
    settings, before = subset_kb
    assert_consistent(before)
    summary = ingest_dump(settings, sample_dump, limit=SUBSET, progress=False, workers=2, embedder=embedder)
    assert (summary.pages, summary.redirects, summary.passages, summary.triples) == (0, 0, 0, 0)
    assert summary.unchanged == SUBSET
    assert snapshot(settings) == before


def test_newer_revision_replaces_passages_facts_and_vectors(tmp_path, sample_kb, embedder):
    settings = fresh_settings(tmp_path, sample_kb)
    words = " ".join(f"word{i}" for i in range(120))
    old = "{{Infobox country\n| capital = [[Oldtown]]\n}}\n'''Testland''' is a country. " + words
    new = "{{Infobox country\n| capital = [[Newtown]]\n}}\n'''Testland''' is a nation. " + words + "\n\n== History ==\n" + words
    redirect = page_xml(2, "Testlandia", 5, "#REDIRECT [[Testland]]", redirect="Testland")
    ingest_dump(settings, write_dump(tmp_path / "v1.xml", [page_xml(1, "Testland", 10, old), redirect]),
                progress=False, workers=1, embedder=embedder)
    first = snapshot(settings)
    ingest_dump(settings, write_dump(tmp_path / "v2.xml", [page_xml(1, "Testland", 11, new), redirect]),
                progress=False, workers=1, embedder=embedder)
    second = snapshot(settings)
    assert_consistent(second)
    assert all(pid.startswith("1:11:") for pid, _, _ in second["passages"]) and len(second["passages"]) == 2
    assert not set(first["vector_ids"]) & set(second["vector_ids"])  # old vectors are gone
    capitals = [t for t in second["triples"] if t[1] == "capital"]
    assert capitals == [(1, "capital", "Newtown", "", "infobox", 11)]
    assert ("testlandia", 1, "redirect") in second["aliases"]
    # an older revision arriving later is ignored
    ingest_dump(settings, write_dump(tmp_path / "v1b.xml", [page_xml(1, "Testland", 10, old)]),
                progress=False, workers=1, embedder=embedder)
    assert snapshot(settings) == second


def test_resume_skips_pages_the_unfinished_run_committed(tmp_path, sample_kb, embedder):
    from kg.store import IngestRun, make_engine, session_factory

    settings = fresh_settings(tmp_path, sample_kb)
    text = "Alpha is a letter used in many words. " * 12
    ingest_dump(settings, write_dump(tmp_path / "a.xml", [page_xml(1, "Alpha", 1, text)]),
                progress=False, workers=1, embedder=embedder)
    dump = write_dump(tmp_path / "b.xml", [page_xml(1, "Alpha", 2, text), page_xml(2, "Beta", 1, text)])
    engine = make_engine(settings.database_url)
    with session_factory(engine)() as session:  # as if a run over this dump was killed after page 1
        session.add(IngestRun(dump=str(dump.resolve()), status="running", last_page_id=1))
        session.commit()
    engine.dispose()
    summary = ingest_dump(settings, dump, resume=True, progress=False, workers=1, embedder=embedder)
    assert (summary.pages, summary.unchanged) == (1, 1)  # Beta written; Alpha skipped without a look
    assert snapshot(settings)["pages"] == [(1, 1, "Alpha"), (2, 1, "Beta")]


def _count(db: Path, sql: str) -> int:
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return conn.execute(sql).fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.parametrize("delay_s", [0.0, 2.0])
def test_killed_run_recovers(tmp_path, sample_kb, sample_dump, subset_kb, delay_s):
    """SIGKILL a real `kgqa ingest` ``delay_s`` after its first passages are committed (while it embeds),
    run it again: no duplicates, no orphan vectors, the same state as a clean run."""
    settings = fresh_settings(tmp_path, sample_kb)
    env = {**os.environ, "KGQA_DATA_DIR": str(settings.data_dir), "KGQA_LM_PATH": sample_kb.lm_path}
    command = [sys.executable, "-m", "app.cli", "ingest", str(sample_dump), "--limit", str(SUBSET), "--no-progress",
               "--workers", "1"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = settings.data_dir / "kgqa.db"
    deadline = time.monotonic() + 300
    while _count(db, "SELECT count(*) FROM passages") < 1 and process.poll() is None:
        assert time.monotonic() < deadline, "ingest never committed passages"
        time.sleep(0.05)
    time.sleep(delay_s)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    state = snapshot(settings)
    assert_consistent(state)
    clean = subset_kb[1]
    assert state["pages"] == clean["pages"]
    assert [p for p, _, _ in state["passages"]] == [p for p, _, _ in clean["passages"]]
    assert state["triples"] == clean["triples"] and state["aliases"] == clean["aliases"]


# ---- bad input: each fails with one clear line, and the existing KB stays intact --------------------------


def _truncated_bz2(tmp_path, sample_dump):
    path = tmp_path / "truncated.xml.bz2"
    path.write_bytes(sample_dump.read_bytes()[: 300_000])
    return path


def _malformed(tmp_path, _):
    return _write(tmp_path / "malformed.xml", b'<mediawiki><page><title>A</title><ns>0</ns></pag></mediawiki>')


def _bomb(tmp_path, _):
    entities = "".join(f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    return _write(tmp_path / "bomb.xml", ('<?xml version="1.0"?><!DOCTYPE mediawiki [<!ENTITY l0 "lol">'
                                          + entities + ']><mediawiki><page><title>&l9;</title></page></mediawiki>').encode())


def _invalid_utf8(tmp_path, _):
    good = write_dump(tmp_path / "good.xml", [page_xml(900002, "Bytes", 1, "caf\u00e9 text")]).read_bytes()
    return _write(tmp_path / "invalid.xml", good.replace("é".encode(), b"\xff\xfe"))


def _empty(tmp_path, _):
    return _write(tmp_path / "empty.xml.bz2", b"")


def _not_a_dump(tmp_path, _):
    return _write(tmp_path / "notes.txt", b"just some notes, not XML at all\n")


def _other_xml(tmp_path, _):
    return _write(tmp_path / "feed.xml", b'<?xml version="1.0"?><rss><channel><title>x</title></channel></rss>')


def _missing(tmp_path, _):
    return tmp_path / "does-not-exist.xml.bz2"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BAD_INPUTS = {
    "malformed XML": (_malformed, "malformed XML"),
    "entity bomb": (_bomb, "entity"),
    "invalid UTF-8": (_invalid_utf8, "invalid UTF-8"),
    "empty file": (_empty, "empty"),
    "not a dump (text)": (_not_a_dump, "not a MediaWiki"),
    "not a dump (other XML)": (_other_xml, "not a MediaWiki"),
    "missing path": (_missing, "not found"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_cleanly_and_keeps_the_kb(case, tmp_path, subset_kb, sample_dump, embedder):
    settings, before = subset_kb
    make, message = BAD_INPUTS[case]
    path = make(tmp_path, sample_dump)
    with pytest.raises(DumpError, match=message):
        ingest_dump(settings, path, progress=False, workers=1, embedder=embedder)
    assert snapshot(settings) == before


def test_truncated_bz2_keeps_what_was_read_consistent(tmp_path, subset_kb, sample_dump, embedder):
    """A dump that breaks half-way: pages read before the break are committed (as a killed run would),
    nothing stored before is lost, and the index still matches the store."""
    settings, before = subset_kb
    with pytest.raises(DumpError, match="truncated"):
        ingest_dump(settings, _truncated_bz2(tmp_path, sample_dump), progress=False, workers=2, embedder=embedder)
    after = snapshot(settings)
    assert_consistent(after)
    assert set(before["pages"]) <= set(after["pages"])
    assert set(before["passages"]) <= set(after["passages"])
    assert set(before["triples"]) <= set(after["triples"])


def test_cli_reports_bad_input_in_one_line(tmp_path, subset_kb):
    from app.cli import main

    settings, _ = subset_kb
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "nope.xml"), "--no-progress"], obj={"settings": settings})
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "dump not found" in result.stderr
