"""``kgqa.progress``: a bar on a terminal; elsewhere a plain line at the start, now and then, and at the end."""

from __future__ import annotations

import io

from kgqa.progress import progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_thousands_of_steps_print_a_few_plain_lines():
    log = io.StringIO()
    for _ in progress_bar(range(5000), stream=log, desc="retrieval eval", unit="query"):
        pass
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and 2 <= len(lines) <= 3  # the start, the end (and maybe one between)
    assert lines[-1].startswith("retrieval eval: 100% 5000/5000")


def test_off_a_terminal_a_line_comes_every_interval():
    log = io.StringIO()
    bar = progress_bar(total=3, stream=log, desc="qa eval", interval_s=0)
    for _ in range(3):
        bar.update(1)
    bar.close()
    counts = [line.split()[3] for line in log.getvalue().splitlines()]
    assert list(dict.fromkeys(counts)) == ["0/3", "1/3", "2/3", "3/3"] and len(counts) <= 5  # closing may repeat the end


def test_a_terminal_gets_the_live_bar_and_disabled_prints_nothing():
    screen, quiet = Terminal(), io.StringIO()
    for _ in progress_bar(range(3), stream=screen, desc="ingest"):
        pass
    assert "\r" in screen.getvalue() and "|" in screen.getvalue()
    for _ in progress_bar(range(3), stream=quiet, enabled=False):
        pass
    assert quiet.getvalue() == ""
