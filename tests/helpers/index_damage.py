"""Ways to damage an index file, as a full disk, a bad copy or a stray write would."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

KINDS = ("truncated", "zeroed", "random start")


def damage(path: Path, kind: str, *, in_place: bool = True) -> None:
    """Cut ``path`` to half its size, overwrite it with zeros, or overwrite its first 4 KiB (at most half of it)
    with random bytes. ``in_place`` writes into the same inode, as a process outside kgqa would (what a memory
    mapping of it sees); otherwise the damaged copy replaces it."""
    data = path.read_bytes()
    if kind == "truncated":
        damaged = data[:len(data) // 2]
    elif kind == "zeroed":
        damaged = bytes(len(data))
    elif kind == "random start":
        cut = max(1, min(4096, len(data) // 2))
        damaged = random.Random(str(path)).randbytes(cut) + data[cut:]
    else:
        raise ValueError(f"unknown damage {kind!r}")
    if in_place:
        with open(path, "r+b") as handle:
            handle.write(damaged)
            handle.truncate(len(damaged))
    else:
        temp = path.with_name(path.name + ".damaged")
        temp.write_bytes(damaged)
        os.replace(temp, path)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A tiny KB as an ingest leaves it: store, FAISS index, BM25 and link folders, graph pickle, manifest."""
    from kg import index_files
    from retrieval.knowledge_base import KnowledgeBase
    from tests.helpers.tiny_kb import HashingEmbedder, build_tiny_kb

    settings = build_tiny_kb(tmp_path_factory.mktemp("pristine") / "data")
    KnowledgeBase(settings, embedder=HashingEmbedder()).warm_up()
    index_files.stamp(settings.index_dir)
    return settings
