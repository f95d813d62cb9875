"""Progress bars that read well wherever they go: a live bar on a terminal, a line now and then elsewhere.

``kgqa eval retrieval ... > run.log 2>&1`` used to fill the file with thousands of bar
redraws (each a ``\\r`` rewrite of one line). ``progress_bar`` is tqdm as usual when its stream
is a terminal; written anywhere else (a file, a pipe, a CI log) the same bar prints its
state as one plain line when it starts, every ``LOG_INTERVAL_S`` seconds and when it ends,
as pip and other well-kept command lines do. ``enabled=False`` prints nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TextIO

LOG_INTERVAL_S = 30.0


class LineStream:
    """A text stream for tqdm that writes each redraw of the bar as one plain line."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self._last = ""

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line and line != self._last:  # closing redraws the last state once more
            self._stream.write(line + "\n")
            self._last = line

    def flush(self) -> None:
        self._stream.flush()


def is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, stream: TextIO | None = None,
             interval_s: float = LOG_INTERVAL_S, **options):
    """A tqdm bar over ``iterable`` (or updated by hand, with ``total=``) on ``stream`` (stderr by default).

    ``options`` are tqdm's (``desc``, ``unit``, ``total``, ...). Off a terminal the bar is
    text only (no bar characters) and printed at most every ``interval_s`` seconds.
    """
    from tqdm import tqdm

    stream = stream if stream is not None else sys.stderr
    if not enabled:
        return tqdm(iterable, disable=True, **options)
    if is_terminal(stream):
        return tqdm(iterable, file=stream, dynamic_ncols=True, **options)
    return tqdm(iterable, file=LineStream(stream), ncols=0, ascii=True, mininterval=interval_s,
                maxinterval=interval_s, **options)
