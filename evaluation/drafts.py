"""The LM's drafts by question id, kept in a JSONL file so a dev run drafts each question once.

The draft is the slow part of a tuning run and does not depend on what is tuned (the
claim checker's threshold, the reader's weights), so runs over the same dev set reuse it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


class DraftCache:
    """``{"id", "drafted"}`` lines: read once when opened, each new draft appended as it is made."""

    def __init__(self, path: Path | None):
        self.path = path
        self._known: dict[str, list[str]] = {}
        if path is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    self._known[row["id"]] = row["drafted"]
        self._sink = path.open("a", encoding="utf-8") if path is not None else None

    def get(self, question_id: str, draft: Callable[[], list[str]]) -> list[str]:
        """The cached draft of ``question_id``, else ``draft()``, appended to the file at once."""
        if question_id not in self._known:
            self._known[question_id] = draft()
            if self._sink is not None:
                self._sink.write(json.dumps({"id": question_id, "drafted": self._known[question_id]}) + "\n")
                self._sink.flush()
        return self._known[question_id]

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()

    def __enter__(self) -> "DraftCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
