"""Folders of ``.npy`` arrays derived from SQL, checked against their stamps, then read or memory-mapped.

A folder holds the arrays and a JSON stamp of the SQL state they were built from.
It is written in a temporary folder beside its place and swapped in whole, under
an exclusive file lock, so a reader (holding the shared lock) never sees half of
one; a process that mapped the old files keeps its mappings after the swap. Each
file's size and checksum go into the index manifest as the folder is swapped in
(kg/index_files.py). A reader checks every file against it: a file up to
``index_files.COPY_MAX_BYTES`` is read into memory (nothing done to the file later
can reach the process), a larger one is memory-mapped, so that server processes
share one copy. A damaged file is logged by name and the folder rebuilt from SQL.
The link graph (kg/link_graph.py) and the BM25 index with its passage catalog
(kg/sparse_index.py) are kept this way.
"""

from __future__ import annotations

import bisect
import fcntl
import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np

from kg import index_files

log = logging.getLogger(__name__)

STAMP_FILE = "stamp.json"
T = TypeVar("T")


@contextmanager
def replacing(folder: Path, stamp: dict) -> Iterator[Path]:
    """A fresh temporary folder beside ``folder`` to write into; when the block ends well, the stamp is
    written and the folder swapped in (a failure leaves ``folder`` as it was).

    Callers hold the exclusive lock (``load_current`` does), so readers never see a half-swapped folder.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    for leftover in folder.parent.glob(f".{folder.name}-*"):  # from a build that was killed
        shutil.rmtree(leftover, ignore_errors=True)
    building = Path(tempfile.mkdtemp(prefix=f".{folder.name}-new-", dir=folder.parent))
    try:
        building.chmod(0o755)  # readable by every server process, like the files in it
        yield building
        (building / STAMP_FILE).write_text(json.dumps(stamp))
        old = None
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}-old-", dir=folder.parent))
            os.replace(folder, old / folder.name)
        os.replace(building, folder)
        index_files.stamp(folder.parent, [folder])  # still under the exclusive lock: readers see both or neither
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)  # processes that mapped it keep their mappings


def save_arrays(arrays: Mapping[str, np.ndarray], stamp: dict, folder: Path) -> None:
    """Write ``name.npy`` for each array and the stamp, swapped in whole (see ``replacing``)."""
    with replacing(folder, stamp) as building:
        for name, array in arrays.items():
            np.save(building / f"{name}.npy", array)


def open_arrays(folder: Path, names: tuple[str, ...], *, checked: bool = True) -> dict[str, np.ndarray]:
    """The named arrays of ``folder``, read-only: each file checked against its stamp in the manifest of the
    folder's parent (``checked``), then read into memory, or memory-mapped when larger than
    ``index_files.COPY_MAX_BYTES``. Raises ``index_files.DamagedIndexFile`` (a ``ValueError``) naming a damaged file.

    A mapped array is a plain ndarray view of its ``np.memmap`` (its ``base``): slicing a memmap costs several
    times more.
    """
    return {name: _open_array(folder, folder / f"{name}.npy", checked) for name in names}


def _open_array(folder: Path, path: Path, checked: bool) -> np.ndarray:
    if checked:
        data = index_files.read_checked(folder.parent, path)
    else:
        data = path.read_bytes() if path.stat().st_size <= index_files.COPY_MAX_BYTES else None
    if data is None:
        return np.asarray(np.load(path, mmap_mode="r"))
    array = np.load(io.BytesIO(data), allow_pickle=False)
    array.flags.writeable = False
    return array


def saved_stamp(folder: Path, *, checked: bool = False) -> dict | None:
    """The folder's SQL stamp; None when there is none. With ``checked``, a stamp file that differs from its
    manifest entry raises ``index_files.DamagedIndexFile``."""
    path = folder / STAMP_FILE
    try:
        data = index_files.read_checked(folder.parent, path) if checked else None
        return json.loads(path.read_bytes() if data is None else data)  # None: checked in place (a large file)
    except index_files.DamagedIndexFile:
        if not path.is_file():
            return None
        raise
    except (OSError, ValueError):
        return None


def load_current(folder: Path, stamp: dict, open_folder: Callable[[Path], T], build: Callable[[], None],
                 what: str) -> T:
    """``open_folder(folder)`` when its stamp is ``stamp``; else ``build()`` (which saves it there) first.

    Raises OSError when the folder can be neither read nor rebuilt; callers decide what to do without it.
    """
    with folder_lock(folder, exclusive=False):
        loaded = _open_if_current(folder, stamp, open_folder, what, report=False)
    if loaded is None:
        with folder_lock(folder, exclusive=True):
            loaded = _open_if_current(folder, stamp, open_folder, what)  # another process may have rebuilt it
            if loaded is None:
                log.info("building %s in %s", what, folder)
                build()
                loaded = open_folder(folder)
    return loaded


def _open_if_current(folder: Path, stamp: dict, open_folder: Callable[[Path], T], what: str, *,
                     report: bool = True) -> T | None:
    """The opened folder when current and intact, else None; ``report`` logs why (once: the retry under the
    exclusive lock reports)."""
    try:
        if saved_stamp(folder, checked=True) != stamp:
            return None
        return open_folder(folder)
    except (OSError, ValueError) as exc:  # a file missing, cut short or changed since it was stamped: rebuild
        if report:
            log.warning("%s is unusable: %s; rebuilding it from the SQL store", what, exc)
        return None


@contextmanager
def folder_lock(folder: Path, *, exclusive: bool) -> Iterator[None]:
    """A lock file beside ``folder``: shared to read it, exclusive to replace it.

    Where the lock file cannot be made (a read-only index), readers go on without it: nothing can replace the folder.
    """
    try:
        if exclusive:
            folder.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(folder.parent / f"{folder.name}.lock", os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:
        if exclusive:
            raise
        yield
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(descriptor)  # releases the lock


class PackedStrings:
    """Strings saved as UTF-8 bytes one after another, cut at ``offsets``, found by binary search.

    ``order`` lists the stored strings in sorted order; without it they are stored sorted.
    Sorting the UTF-8 bytes sorts as Python sorts the strings.
    """

    def __init__(self, data: np.ndarray, offsets: np.ndarray, order: np.ndarray | None = None):
        self.data = data
        self.offsets = offsets
        self.order = order

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, at: int) -> str:
        return self.data[self.offsets[at]:self.offsets[at + 1]].tobytes().decode("utf-8")

    def find(self, value: str) -> int | None:
        """Where ``value`` is stored (the first of equal ones), or None."""
        order = self.order
        key = self.__getitem__ if order is None else (lambda rank: self[int(order[rank])])
        rank = bisect.bisect_left(range(len(self)), value, key=key)
        if rank == len(self) or key(rank) != value:
            return None
        return rank if order is None else int(order[rank])
