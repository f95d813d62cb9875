"""The hand-written claim set, and a stand-in for a capable LM that writes its claims.

A claim file (``data/eval/sample/claims-dev.jsonl``, ``claims-test.jsonl``) holds, per
question of the matching question file, one-sentence answers as a capable model would
write them: ``right`` ones, and ``wrong`` ones of a named kind (``same-article``: another
name or number of the same article; ``other-relation``: the value of another relation;
``subject``: the question's subject given back; ``other-article``: a statement true of
another entity; ``invented``: a confident answer to a question the knowledge base cannot
answer). ``data/eval/sample/README.md`` says how they were written.

``StandInGenerator`` is a ``models.lm.generator.Generator`` that answers each question
with its hand-written claims, so the whole answer path can be measured as it would run
with a model that writes right answers and plausible wrong ones in a controlled share.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from evaluation.questions import QuestionSetError
from models.lm.generator import Generation, Messages

WRONG_KINDS = ("same-article", "other-relation", "subject", "other-article", "invented")


class ClaimRecord(BaseModel):
    text: str = Field(min_length=1)
    label: str = Field(pattern="^(right|wrong)$")
    kind: str = ""


class QuestionClaims(BaseModel):
    id: str
    question: str
    claims: list[ClaimRecord]

    def labelled(self, label: str) -> list[ClaimRecord]:
        return [c for c in self.claims if c.label == label]


def load_claims(path: Path) -> dict[str, QuestionClaims]:
    """The claim file's records by question id; a malformed line is a ``QuestionSetError`` naming it."""
    found: dict[str, QuestionClaims] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise QuestionSetError(f"cannot read the claim file {path}: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = QuestionClaims.model_validate(json.loads(line))
        except (ValueError, ValidationError) as exc:
            raise QuestionSetError(f"{path}:{number}: not a claim record: {exc}") from exc
        found[record.id] = record
    return found


def _question_of(messages: Messages) -> str:
    """The question the engine's prompt asks (``qa.prompt.build_messages`` ends it with "Question: …")."""
    content = str(messages[-1].get("content", ""))
    return content.rsplit("Question: ", 1)[-1].strip()


def _choice(seed: int, key: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big"))


class StandInGenerator:
    """Writes each question's hand-written claims as its draft, instead of a model.

    For an answerable question the draft holds one right claim with probability
    ``right_share`` (else a second wrong one) and one wrong claim, in a random order; for
    an unanswerable one, its invented claims. The choice is fixed by ``seed`` and the
    question, so two runs draft alike.
    """

    model_name, backend, device, attention = "stand-in", "stand-in", "cpu", "none"

    def __init__(self, claims: dict[str, QuestionClaims], *, right_share: float = 1.0, seed: int = 0):
        if not 0.0 <= right_share <= 1.0:
            raise ValueError("right_share must be between 0 and 1")
        self.by_question = {c.question.strip(): c for c in claims.values()}
        self.right_share = right_share
        self.seed = seed

    def warm_up(self) -> None:
        pass

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def draft_for(self, question: str) -> list[str]:
        record = self.by_question.get(question.strip())
        if record is None:
            return []
        rng = _choice(self.seed, record.id)
        right, wrong = record.labelled("right"), record.labelled("wrong")
        if not right:
            return [c.text for c in wrong]
        chosen = rng.sample(wrong, k=min(2, len(wrong)))
        draft = [chosen[0].text]
        if rng.random() < self.right_share:
            draft.append(rng.choice(right).text)
        elif len(chosen) > 1:
            draft.append(chosen[1].text)
        rng.shuffle(draft)
        return draft

    def stream(self, messages: Messages, **knobs) -> Iterator[str]:
        text = " ".join(self.draft_for(_question_of(messages)))
        for number, word in enumerate(text.split(" ")):
            yield word if number == 0 else f" {word}"

    def generate(self, messages: Messages, **knobs) -> Generation:
        started = time.perf_counter()
        text = "".join(self.stream(messages))
        return Generation(text=text, prompt_tokens=0, new_tokens=len(text.split()), first_token_s=0.0,
                          total_s=time.perf_counter() - started)
