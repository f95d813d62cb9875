"""Which embedder made a set of vectors: a name, the vector width and a fingerprint of the model's files.

The fingerprint is a SHA-256 over the contents of the files that decide the
vectors (weights, configs, tokenizer files, and the module folders that
``modules.json`` lists), each named relative to the model folder: a copy of the
same model has the same fingerprint, a changed file gives another. Each file is
hashed once; its digest is cached by (path, size, mtime) in memory and in a
small JSON file, so later starts only stat the files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

BUNDLED_EMBEDDER_NAME = "all-MiniLM-L6-v2"
FINGERPRINT_CACHE_FILE = "embedder-fingerprints.json"  # under settings.models_dir
FINGERPRINT_VERSION = "kgqa-embedder-fingerprint-v1"  # change when the file list or the hashing changes
# Files of a sentence-transformers folder that decide its vectors; README, training notes
# and other exports (onnx/, openvino/) do not.
MODEL_FILE_PATTERNS = (
    "*.safetensors", "model.safetensors.index.json", "pytorch_model*.bin", "pytorch_model.bin.index.json",
    "config.json", "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.txt", "vocab.json", "merges.txt", "*.model",
)


class EmbedderIdentity(BaseModel):
    """An embedder as a vector index records it; two identities make the same vectors when dim and fingerprint agree."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)  # "all-MiniLM-L6-v2" for the bundled model, else the configured folder
    dim: int = Field(gt=0)
    fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")  # SHA-256 of the model files, see model_fingerprint

    def same_vectors(self, other: EmbedderIdentity) -> bool:
        return self.dim == other.dim and self.fingerprint == other.fingerprint

    def __str__(self) -> str:
        return f"{self.name} ({self.dim}-d, fingerprint {self.fingerprint[:12]})"


def model_files(folder: Path) -> list[Path]:
    """The files whose contents the fingerprint covers, sorted."""
    files = {path for pattern in MODEL_FILE_PATTERNS for path in folder.glob(pattern) if path.is_file()}
    for module in _module_folders(folder):
        files.update(path for path in module.rglob("*") if path.is_file())
    if not files:
        raise ValueError(f"{folder} holds no model files (weights, config, tokenizer)")
    return sorted(files)


def model_fingerprint(folder: Path, cache_file: Path | None = None) -> str:
    """SHA-256 over (relative name, content digest) of every model file; ``cache_file`` keeps the digests."""
    folder = Path(folder)
    cache = _DigestCache(cache_file)
    digest = hashlib.sha256(f"{FINGERPRINT_VERSION}\n".encode())
    for path in model_files(folder):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{cache.file_digest(path)}\n".encode())
    cache.save()
    return digest.hexdigest()


def _module_folders(folder: Path) -> list[Path]:
    """The sub-folders ``modules.json`` names (pooling, dense, normalize configs and weights)."""
    modules = folder / "modules.json"
    if not modules.is_file():
        return []
    try:
        entries = json.loads(modules.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{modules} is not valid JSON: {exc}") from None
    root = folder.resolve()
    found = []
    for entry in entries if isinstance(entries, list) else []:
        path = entry.get("path") if isinstance(entry, dict) else None
        sub = folder / str(path) if path else None
        if sub is not None and sub.is_dir() and sub.resolve() != root and sub.resolve().is_relative_to(root):
            found.append(sub)
    return found


# (resolved path, size, mtime_ns) -> sha256 of the contents; shared by every cache file in this process.
_MEMORY: dict[tuple[str, int, int], str] = {}
_MEMORY_LOCK = threading.Lock()


class _DigestCache:
    """File digests keyed by (path, size, mtime), in memory and in an optional JSON file."""

    def __init__(self, cache_file: Path | None) -> None:
        self.cache_file = cache_file
        self.entries = self._read() if cache_file else {}
        self.changed = False

    def file_digest(self, path: Path) -> str:
        stat = path.stat()
        name = str(path.resolve())
        key = (name, stat.st_size, stat.st_mtime_ns)
        with _MEMORY_LOCK:
            known = _MEMORY.get(key)
        stored = self.entries.get(name)
        if known is None and stored and (stored.get("size"), stored.get("mtime_ns")) == key[1:]:
            known = stored.get("sha256")
        if known is None:
            known = _sha256_file(path)
        with _MEMORY_LOCK:
            _MEMORY[key] = known
        entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": known}
        if stored != entry:
            self.entries[name] = entry
            self.changed = True
        return known

    def save(self) -> None:
        if not (self.cache_file and self.changed):
            return
        entries = {name: entry for name, entry in self.entries.items() if Path(name).exists()}
        tmp = None
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{self.cache_file.name}.", suffix=".tmp", dir=self.cache_file.parent)
            tmp = Path(name)
            with os.fdopen(fd, "w") as handle:
                json.dump({"version": FINGERPRINT_VERSION, "files": entries}, handle, indent=1, sort_keys=True)
            os.replace(tmp, self.cache_file)
        except OSError as exc:  # a read-only models folder only costs a re-hash at the next start
            logger.warning("cannot write the embedder fingerprint cache %s: %s", self.cache_file, exc)
            if tmp is not None:
                tmp.unlink(missing_ok=True)

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.cache_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logger.warning("ignoring the unreadable embedder fingerprint cache %s: %s", self.cache_file, exc)
            return {}
        if not isinstance(data, dict) or data.get("version") != FINGERPRINT_VERSION:
            return {}
        files = data.get("files")
        return {k: v for k, v in files.items() if isinstance(v, dict)} if isinstance(files, dict) else {}


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
