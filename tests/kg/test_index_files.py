"""The index manifest: every file under index/ stamped with size and SHA-256, and checked before use."""

from __future__ import annotations

import json
import logging

import pytest

from kg import index_files
from kg.index_files import MANIFEST, DamagedIndexFile


@pytest.fixture
def index_dir(tmp_path):
    index = tmp_path / "data" / "index"
    (index / "bm25").mkdir(parents=True)
    (index / "passages.faiss").write_bytes(b"vectors" * 100)
    (index / "bm25" / "data.npy").write_bytes(b"scores" * 100)
    (index / "bm25.lock").write_bytes(b"")
    (index / ".bm25-new-x").mkdir()
    (index / ".bm25-new-x" / "half.npy").write_bytes(b"half")  # a killed build's leftover
    return index


def test_stamp_lists_every_index_file_but_locks_leftovers_and_itself(index_dir):
    files = index_files.stamp(index_dir)
    assert sorted(files) == ["bm25/data.npy", "passages.faiss"]
    assert files["passages.faiss"]["size"] == 700 and len(files["passages.faiss"]["sha256"]) == 64
    manifest = json.loads((index_dir / MANIFEST).read_text())
    assert manifest["format"] == 1 and manifest["files"] == files
    assert not list(index_dir.glob(f".{MANIFEST}.*"))  # the temporary file was renamed


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "random start", "one byte", "missing"])
def test_a_damaged_file_is_named_by_its_place_in_the_data_folder(index_dir, damage):
    index_files.stamp(index_dir)
    path = index_dir / "bm25" / "data.npy"
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[:100])
    elif damage == "zeroed":
        path.write_bytes(bytes(len(data)))
    elif damage == "random start":
        path.write_bytes(bytes(range(64)) + data[64:])
    elif damage == "one byte":
        path.write_bytes(data[:300] + b"X" + data[301:])
    else:
        path.unlink()
    with pytest.raises(DamagedIndexFile) as raised:
        index_files.read_checked(index_dir, path, repair="run the repair")
    message = str(raised.value)
    assert message.startswith("index/bm25/data.npy ") and message.endswith("; run the repair")
    assert str(index_dir) not in message and raised.value.name == "index/bm25/data.npy"
    assert [problem.name for problem in index_files.damaged(index_dir)] == ["index/bm25/data.npy"]


def test_an_intact_file_reads_as_the_bytes_checked_and_a_large_one_is_checked_in_place(index_dir, monkeypatch):
    index_files.stamp(index_dir)
    path = index_dir / "passages.faiss"
    assert index_files.read_checked(index_dir, path) == b"vectors" * 100
    monkeypatch.setattr(index_files, "COPY_MAX_BYTES", 10)
    assert index_files.read_checked(index_dir, path) is None  # checked; the caller maps it
    path.write_bytes(b"x" * 700)
    with pytest.raises(DamagedIndexFile, match="does not match the checksum"):
        index_files.read_checked(index_dir, path)


def test_an_unstamped_file_is_stamped_as_found_with_one_log_line(index_dir, caplog):
    path = index_dir / "passages.faiss"
    with caplog.at_level(logging.WARNING, logger="kg.index_files"):
        assert index_files.read_checked(index_dir, path) == b"vectors" * 100
    assert ["index/passages.faiss has no stamp" in r.getMessage() for r in caplog.records] == [True]
    assert index_files.stamped(index_dir, path)
    path.write_bytes(b"changed")
    with pytest.raises(DamagedIndexFile, match="is 7 bytes, 700 when it was written"):
        index_files.read_checked(index_dir, path)


@pytest.mark.parametrize("garbage", [b"", b"\0" * 64, b"\x93NUMPY garbage", b'{"format": 1, "files": [1]}'])
def test_a_damaged_manifest_is_logged_and_its_files_stamped_again(index_dir, caplog, garbage):
    index_files.stamp(index_dir)
    (index_dir / MANIFEST).write_bytes(garbage)
    with caplog.at_level(logging.WARNING, logger="kg.index_files"):
        assert index_files.read_manifest(index_dir) is None
        index_files.check(index_dir, index_dir / "passages.faiss")
    assert any(r.getMessage().startswith("index/manifest.json is damaged") for r in caplog.records)
    assert sorted(index_files.read_manifest(index_dir)) == ["passages.faiss"]


def test_a_stamped_folder_drops_the_entries_of_files_it_no_longer_holds(index_dir):
    index_files.stamp(index_dir)
    (index_dir / "bm25" / "data.npy").unlink()
    (index_dir / "bm25" / "other.npy").write_bytes(b"other")
    files = index_files.stamp(index_dir, [index_dir / "bm25"])
    assert sorted(files) == ["bm25/other.npy", "passages.faiss"]


def test_a_replacement_killed_at_any_point_leaves_files_that_match_their_stamps(index_dir):
    index_files.stamp(index_dir)
    path = index_dir / "passages.faiss"
    temp = index_dir / ".passages.faiss.123.tmp"
    temp.write_bytes(b"new vectors")
    index_files.expect(index_dir, {path: temp})
    index_files.check(index_dir, path)  # killed before the rename: the old file still matches
    temp.replace(path)
    index_files.check(index_dir, path)  # killed after it: the new one matches
    index_files.stamp(index_dir, [path])
    assert "previous" not in index_files.read_manifest(index_dir)["passages.faiss"]
    path.write_bytes(b"vectors" * 100)  # the old file is no longer accepted once the new one is stamped
    with pytest.raises(DamagedIndexFile):
        index_files.check(index_dir, path)


def test_completing_the_manifest_stamps_new_files_and_keeps_the_stamps_it_has(index_dir):
    index_files.stamp(index_dir)
    (index_dir / "bm25" / "data.npy").write_bytes(b"damaged since")
    (index_dir / "graph.pickle").write_bytes(b"new")
    (index_dir / "passages.faiss").unlink()
    files = index_files.complete(index_dir)
    assert sorted(files) == ["bm25/data.npy", "graph.pickle"]
    assert [problem.name for problem in index_files.damaged(index_dir)] == ["index/bm25/data.npy"]
