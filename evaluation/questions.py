"""The question-set record and its JSONL form, shared by the dev-set generator and both evals."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from kgqa.errors import KgqaError


class QuestionSetError(KgqaError):
    """A question file is missing or has a malformed line."""


class FactSource(BaseModel):
    """Where the gold fact was read: the page revision and the raw infobox key."""

    page_id: int
    rev_id: int
    field: str = ""


class Hop(BaseModel):
    """One hop of a multi-hop question: the article it reads and the sentence it takes from there.

    ``passage_id`` and ``evidence`` are None for the hop an unanswerable question misses (the
    bridge entity has no article, or no passage states the second fact); ``title`` then names
    the missing entity or the article that lacks the fact.
    """

    title: str = Field(min_length=1)
    passage_id: str | None = None  # page:rev:section:ordinal, as in gold_passage_ids
    evidence: str | None = None  # the sentence, copied verbatim from the passage


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
    # Multi-hop sets (data/eval/multihop): how the hops combine, the entity that links them, and each hop's evidence.
    hop_kind: Literal["bridge", "comparison"] | None = None
    bridge: str | None = None
    hops: list[Hop] = Field(default_factory=list)

    @model_validator(mode="after")
    def _hops_are_complete(self) -> EvalQuestion:
        if bool(self.hops) != bool(self.hop_kind):
            raise ValueError("hops and hop_kind go together: a multi-hop question has both, others neither")
        if self.hops and len(self.hops) < 2:
            raise ValueError("a multi-hop question has at least two hops")
        if self.hops and not self.unanswerable and not all(hop.passage_id and hop.evidence for hop in self.hops):
            raise ValueError("every hop of an answerable question names its passage_id and evidence")
        return self

    @property
    def answers(self) -> list[str]:
        """Every acceptable answer string, gold first."""
        golds = [self.answer] if self.answer else []
        return golds + [alias for alias in self.answer_aliases if alias and alias not in golds]

    @property
    def hop_passage_ids(self) -> list[str | None]:
        """Each hop's evidence passage, in hop order (None for a hop the knowledge base lacks)."""
        return [hop.passage_id for hop in self.hops]


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
