"""Every file under ``index/`` is stamped with its size and SHA-256 in ``index/manifest.json``, and checked on read.

Whoever writes an index file stamps it: a BM25 or link-graph folder when it is
swapped in (kg/mapped_arrays.py), the FAISS index and its embedder record at each
ingest checkpoint (kg/vectors.py), the graph pickle (kg/graph.py), and the end of
an ingest stamps every file once more, last. The manifest is rewritten whole
(temporary file, fsync, ``os.replace``) under ``manifest.lock``, so concurrent
writers in several processes never lose each other's entries. Lock files are empty
and carry nothing, so they are not stamped.

Readers check a file against its stamp before they use a byte of it: a missing
file, a wrong size or a wrong digest raises ``DamagedIndexFile``, whose message
names the file by its place in the data folder (``index/bm25/indices.csc.index.npy``),
never by an absolute path. A file up to ``COPY_MAX_BYTES`` is read into memory and
the very bytes read are checked (``read_checked``): a file truncated or overwritten
later, under a running server, cannot touch the process (a memory-mapped file cut
short kills it with SIGBUS). Larger files are checked, then memory-mapped (page
cache shared by every serving process); kgqa's own writers only ever replace
files, never rewrite them in place, so such a mapping stays valid.

A file the manifest does not list (an index written before manifests existed, or a
manifest lost) is stamped as found, with one log line (``adopt``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from kgqa.errors import KgqaError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
GENERATION = "generation.json"  # bumped when a write to the knowledge base is done: servers reload on it
FORMAT = 1
# Files up to this size are read into memory (the bytes checked are the bytes used); larger ones are
# checked, then mapped. The sample's largest index file is 4 MB; at 1M passages the FAISS lists take ~390 MB.
COPY_MAX_BYTES = 256 * 2**20
_CHUNK = 2**20
_SKIPPED_SUFFIXES = (".lock", ".tmp")


class DamagedIndexFile(KgqaError, ValueError):
    """An index file is missing, cut short or changed since it was stamped; the message names it in the data folder."""

    def __init__(self, name: str, reason: str, *, repair: str = ""):
        super().__init__(f"{name} {reason}" + (f"; {repair}" if repair else ""))
        self.name = name  # e.g. "index/bm25/indices.csc.index.npy"
        self.reason = reason


def display_name(index_dir: Path, path: Path) -> str:
    """``path`` by its place in the data folder: ``index/<relative path>``."""
    return f"{index_dir.name}/{path.relative_to(index_dir).as_posix()}"


def index_files(index_dir: Path) -> list[Path]:
    """The files a manifest stamps: everything under ``index_dir`` but the manifest, locks, temporary files
    and hidden leftovers of killed builds."""
    found = []
    for path in sorted(index_dir.rglob("*")):
        relative = path.relative_to(index_dir)
        if (not path.is_file() or relative.as_posix() == MANIFEST or path.name.endswith(_SKIPPED_SUFFIXES)
                or any(part.startswith(".") for part in relative.parts)):
            continue
        found.append(path)
    return found


def digest(path: Path) -> tuple[int, str]:
    """(size, SHA-256 hex) of a file, read in chunks."""
    with open(path, "rb") as handle:
        hashed = hashlib.file_digest(handle, "sha256")
        return handle.tell(), hashed.hexdigest()


def read_manifest(index_dir: Path) -> dict[str, dict] | None:
    """The stamps by relative path; None when there is no manifest or it is unreadable (logged, naming it)."""
    path = index_dir / MANIFEST
    try:
        manifest = json.loads(path.read_bytes())
        files = manifest["files"]
        if manifest.get("format") != FORMAT or not all(
                isinstance(stamp, dict) and isinstance(stamp.get("size"), int) and isinstance(stamp.get("sha256"), str)
                for stamp in files.values()):
            raise ValueError("not a manifest")
        return files
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("%s is damaged (%s); its files are stamped again as found", display_name(index_dir, path),
                    type(exc).__name__)
        return None


def stamp(index_dir: Path, paths: Iterable[Path] | None = None) -> dict[str, dict]:
    """Stamp ``paths`` (all of ``index_files`` when None) in the manifest and return its files as written.

    A folder among ``paths`` stands for every file under it; entries of files now gone are dropped.
    """
    index_dir.mkdir(parents=True, exist_ok=True)
    with _manifest_lock(index_dir):
        files = {} if paths is None else dict(read_manifest(index_dir) or {})
        for path in index_files(index_dir) if paths is None else _expand(index_dir, paths, files):
            key = path.relative_to(index_dir).as_posix()
            if path.is_file():
                size, sha256 = digest(path)
                files[key] = {"size": size, "sha256": sha256}
            else:
                files.pop(key, None)
        _write_manifest(index_dir, files)
    return files


def complete(index_dir: Path) -> dict[str, dict]:
    """Stamp the files the manifest does not list yet and drop the entries of files gone; a stamped file keeps its
    stamp, so one damaged since it was written stays found. The ingest's last step."""
    present = index_files(index_dir)
    with _manifest_lock(index_dir):
        files = read_manifest(index_dir) or {}
        files = {key: value for key, value in files.items() if (index_dir / key).is_file()}
        for path in present:
            key = path.relative_to(index_dir).as_posix()
            if key not in files:
                size, sha256 = digest(path)
                files[key] = {"size": size, "sha256": sha256}
        _write_manifest(index_dir, files)
    return files


def expect(index_dir: Path, replacements: dict[Path, Path]) -> None:
    """Before ``os.replace(temp, target)`` for each target -> temp: stamp each target with its temp file's digest,
    keeping the stamp it had as ``previous``, so a run killed before, between or after the renames leaves files
    that match their stamps (``stamp`` the targets after the renames to drop ``previous``)."""
    with _manifest_lock(index_dir):
        files = dict(read_manifest(index_dir) or {})
        for target, temp in replacements.items():
            key = Path(target).relative_to(index_dir).as_posix()
            size, sha256 = digest(Path(temp))
            entry = {"size": size, "sha256": sha256}
            if key in files:
                entry["previous"] = {"size": files[key]["size"], "sha256": files[key]["sha256"]}
            files[key] = entry
        _write_manifest(index_dir, files)


def _expand(index_dir: Path, paths: Iterable[Path], files: dict) -> list[Path]:
    """Files to stamp: folders replaced by their files and by the entries stamped under them before."""
    expanded = []
    for path in map(Path, paths):
        if path.is_dir():
            prefix = path.relative_to(index_dir).as_posix() + "/"
            expanded += [index_dir / key for key in files if key.startswith(prefix)]
            expanded += [found for found in index_files(index_dir) if found.is_relative_to(path)]
        else:
            expanded.append(path)
    return list(dict.fromkeys(expanded))


def check(index_dir: Path, path: Path, data: bytes | None = None, *, repair: str = "") -> None:
    """Raise ``DamagedIndexFile`` unless ``path`` (or ``data``, the bytes read from it) matches its stamp.

    A file without a stamp is stamped as found (``adopt``).
    """
    name = display_name(index_dir, path)
    if data is None and not path.is_file():
        raise DamagedIndexFile(name, "is missing", repair=repair)
    expected = (read_manifest(index_dir) or {}).get(path.relative_to(index_dir).as_posix())
    if expected is None:
        adopt(index_dir, path)
        return
    if data is not None:
        size, sha256 = len(data), hashlib.sha256(data).hexdigest()
    else:
        size, sha256 = digest(path)
    if {"size": size, "sha256": sha256} == expected.get("previous"):  # replaced by a run killed mid-way
        return
    if size != expected["size"]:
        raise DamagedIndexFile(name, f"is {size} bytes, {expected['size']} when it was written", repair=repair)
    if sha256 != expected["sha256"]:
        raise DamagedIndexFile(name, "does not match the checksum it was written with", repair=repair)


def stamped(index_dir: Path, path: Path) -> bool:
    """Whether the manifest lists ``path`` (a listed file that is gone is damage, an unlisted one may never have been)."""
    return path.relative_to(index_dir).as_posix() in (read_manifest(index_dir) or {})


def adopt(index_dir: Path, path: Path) -> None:
    log.warning("%s has no stamp in %s/%s (written before stamps, or the manifest was lost); stamped as found",
                display_name(index_dir, path), index_dir.name, MANIFEST)
    try:
        stamp(index_dir, [path])
    except OSError as exc:  # a read-only index: checked against nothing, as before stamps
        log.warning("cannot stamp %s (%s)", display_name(index_dir, path), exc)


def read_checked(index_dir: Path, path: Path, *, repair: str = "") -> bytes | None:
    """The file's bytes, checked against its stamp, when it is at most ``COPY_MAX_BYTES``; None for a larger
    file, checked in place (the caller maps it). Raises ``DamagedIndexFile``."""
    try:
        size = path.stat().st_size
        data = path.read_bytes() if size <= COPY_MAX_BYTES else None
    except FileNotFoundError:
        raise DamagedIndexFile(display_name(index_dir, path), "is missing", repair=repair) from None
    check(index_dir, path, data, repair=repair)
    return data


def damaged(index_dir: Path) -> list[DamagedIndexFile]:
    """Every stamped file that is missing or differs from its stamp (for ``kgqa kg check``)."""
    problems = []
    for key in sorted(read_manifest(index_dir) or {}):
        try:
            check(index_dir, index_dir / key)
        except DamagedIndexFile as exc:
            problems.append(exc)
    return problems


def bump_generation(index_dir: Path, reason: str) -> int:
    """Count one more finished write (ingest, sync, delete) in ``index/generation.json``: a running server that
    reads a new number reloads the knowledge base (retrieval/knowledge_base.py). Writers hold the ingest lock,
    so one bumps at a time; the file is stamped as it is swapped in (``expect``), so a kill leaves no damage."""
    path = index_dir / GENERATION
    generation = (read_generation(index_dir) or 0) + 1
    tmp = _write_json(path, {"generation": generation, "reason": reason}, replace=False)
    try:
        expect(index_dir, {path: tmp})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    stamp(index_dir, [path])
    return generation


def read_generation(index_dir: Path) -> int | None:
    """The generation of the knowledge base's files; None before the first write that counted one."""
    try:
        value = json.loads((index_dir / GENERATION).read_bytes())["generation"]
        return value if isinstance(value, int) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_manifest(index_dir: Path, files: dict[str, dict]) -> None:
    _write_json(index_dir / MANIFEST,
                {"format": FORMAT, "algorithm": "sha256", "files": dict(sorted(files.items()))})


def _write_json(path: Path, value: dict, *, replace: bool = True) -> Path:
    """Write ``path`` whole: a temporary file beside it, fsync, ``os.replace`` (or, without ``replace``,
    return the temporary file for the caller to swap in)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(value, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        if not replace:
            return Path(tmp)
        os.replace(tmp, path)
        return path
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _manifest_lock(index_dir: Path) -> Iterator[None]:
    descriptor = os.open(index_dir / "manifest.lock", os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)
