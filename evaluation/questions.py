"""The question-set record and its JSONL form, shared by the dev-set generator and both evals."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from kgqa.errors import KgqaError


class QuestionSetError(KgqaError):
    """A question file is missing or has a malformed line."""


class FactSource(BaseModel):
    """Where the gold fact was read: the page revision and the raw infobox key."""

    page_id: int
    rev_id: int
    field: str = ""


class EvalQuestion(BaseModel):
    """One evaluation question; only ``question`` is required so hand-written sets stay short."""

    question: str = Field(min_length=1)
    id: str = ""
    answer: str | None = None
    answer_aliases: list[str] = Field(default_factory=list)
    gold_titles: list[str] = Field(default_factory=list)
    gold_passage_ids: list[str] = Field(default_factory=list)
    predicate: str = ""
    source: FactSource | None = None
    unanswerable: bool = False
    # Generated sets: fact | missing_entity | missing_fact | future. Hand-written sets name the question's
    # form (who, when, how-many, ...) or why it is unanswerable (absent-entity, absent-fact, false-premise).
    kind: str = "fact"
    evidence: str = ""  # the passage sentence that states the answer (hand-written sets)
    note: str = ""  # why an unanswerable question cannot be answered from the knowledge base

    @property
    def answers(self) -> list[str]:
        """Every acceptable answer string, gold first."""
        golds = [self.answer] if self.answer else []
        return golds + [alias for alias in self.answer_aliases if alias and alias not in golds]


def load_questions(path: Path, *, limit: int | None = None) -> list[EvalQuestion]:
    """Read a JSONL question file; a bad line names its number and loses nothing."""
    path = Path(path)
    if not path.is_file():
        raise QuestionSetError(f"question file not found: {path}")
    questions: list[EvalQuestion] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                question = EvalQuestion.model_validate(json.loads(line))
            except (json.JSONDecodeError, ValidationError) as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise QuestionSetError(f"{path}:{number}: not a valid question line ({first})") from None
            if not question.id:
                question.id = f"q{number}"
            questions.append(question)
            if limit is not None and len(questions) >= limit:
                break
    if not questions:
        raise QuestionSetError(f"{path}: no questions")
    return questions


def save_questions(questions: Iterable[EvalQuestion], path: Path) -> int:
    """Write JSONL atomically (temp file + rename) so a crash never leaves half a set."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    count = 0
    with temporary.open("w", encoding="utf-8") as out:
        for question in questions:
            out.write(question.model_dump_json(exclude_defaults=True) + "\n")
            count += 1
    temporary.replace(path)
    return count
