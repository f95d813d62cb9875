"""Folders of ``.npy`` arrays derived from SQL, memory-mapped so that server processes share one copy.

A folder holds the arrays and a JSON stamp of the SQL state they were built from.
It is written in a temporary folder beside its place and swapped in whole, under
an exclusive file lock, so a reader (holding the shared lock) never sees half of
one; a process that mapped the old files keeps its mappings after the swap. The
link graph (kg/link_graph.py) and the BM25 index with its passage catalog
(kg/sparse_index.py) are kept this way.
"""

from __future__ import annotations

import bisect
import fcntl
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


def open_arrays(folder: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named arrays of ``folder``, memory-mapped read-only.

    Each is a plain ndarray view of its ``np.memmap`` (its ``base``): slicing a memmap costs several times more.
    """
    return {name: np.asarray(np.load(folder / f"{name}.npy", mmap_mode="r")) for name in names}


def saved_stamp(folder: Path) -> dict | None:
    try:
        return json.loads((folder / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None


def load_current(folder: Path, stamp: dict, open_folder: Callable[[Path], T], build: Callable[[], None],
                 what: str) -> T:
    """``open_folder(folder)`` when its stamp is ``stamp``; else ``build()`` (which saves it there) first.

    Raises OSError when the folder can be neither read nor rebuilt; callers decide what to do without it.
    """
    with folder_lock(folder, exclusive=False):
        loaded = _open_if_current(folder, stamp, open_folder, what)
    if loaded is None:
        with folder_lock(folder, exclusive=True):
            loaded = _open_if_current(folder, stamp, open_folder, what)  # another process may have rebuilt it
            if loaded is None:
                log.info("building %s in %s", what, folder)
                build()
                loaded = open_folder(folder)
    return loaded


def _open_if_current(folder: Path, stamp: dict, open_folder: Callable[[Path], T], what: str) -> T | None:
    if saved_stamp(folder) != stamp:
        return None
    try:
        return open_folder(folder)
    except (OSError, ValueError) as exc:  # a file missing or cut short: rebuild
        log.warning("%s in %s unreadable (%s)", what, folder, exc)
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
