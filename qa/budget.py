"""Evidence budget: choose facts and passages that fit the prompt's token budget.

Prefill time grows with the prompt, so on a CPU the budget is small to keep
time-to-first-token under a second; on a GPU it can be several times larger.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from kgqa.records import FactHit, PassageHit
from qa.tuning import (
    CPU_EVIDENCE_TOKENS,
    GPU_EVIDENCE_TOKENS,
    MAX_FACTS,
    MAX_PASSAGES,
    MIN_PASSAGE_TOKENS,
)


def evidence_budget(configured: int, device: str) -> int:
    """The configured budget, or one picked by device when it is 0."""
    if configured > 0:
        return configured
    return GPU_EVIDENCE_TOKENS if device.startswith("cuda") else CPU_EVIDENCE_TOKENS


def fact_line(fact: FactHit) -> str:
    """How a fact reads in the prompt and in a citation snippet."""
    return f"{fact.subject} — {fact.predicate.replace('_', ' ')}: {fact.object}"


def one_line(text: str) -> str:
    """A passage's text as the prompt holds it: its paragraphs and list items joined by spaces."""
    return " ".join(text.split("\n"))


def passage_header(number: int, passage: PassageHit) -> str:
    """The label before a passage's text in the prompt: "[n] Title (Section): "."""
    where = f"{passage.title} ({passage.section})" if passage.section else passage.title
    return f"[{number}] {where}: "


@dataclass
class Evidence:
    """What goes into the prompt, in citation order."""

    passages: list[PassageHit] = field(default_factory=list)
    facts: list[FactHit] = field(default_factory=list)
    tokens: int = 0


def _truncate(text: str, max_tokens: int, count_tokens: Callable[[str], int]) -> str:
    """The longest word-boundary prefix of ``text`` within ``max_tokens`` (binary search on words)."""
    words = text.split()
    low, high = 0, len(words)
    while low < high:
        mid = (low + high + 1) // 2
        if count_tokens(" ".join(words[:mid]) + " …") <= max_tokens:
            low = mid
        else:
            high = mid - 1
    return " ".join(words[:low]) + " …" if low < len(words) else text


def select_evidence(
    passages: Sequence[PassageHit],
    facts: Sequence[FactHit],
    budget_tokens: int,
    count_tokens: Callable[[str], int],
    *,
    max_facts: int = MAX_FACTS,
    max_passages: int = MAX_PASSAGES,
) -> Evidence:
    """Facts first (short and precise), then passages in rank order; the last passage may be cut to fit."""
    chosen = Evidence()
    remaining = budget_tokens
    for fact in list(facts)[:max_facts]:
        cost = count_tokens(fact_line(fact)) + 4  # "[F1] " and a newline
        if cost > remaining:
            break
        chosen.facts.append(fact)
        remaining -= cost
    for passage in passages:
        if len(chosen.passages) >= max_passages:
            break
        header = passage_header(len(chosen.passages) + 1, passage)
        cost = count_tokens(header + one_line(passage.text)) + 1
        if cost <= remaining:
            chosen.passages.append(passage)
            remaining -= cost
            continue
        room = remaining - count_tokens(header) - 1
        if room >= MIN_PASSAGE_TOKENS:
            cut = _truncate(passage.text, room, count_tokens)
            chosen.passages.append(passage.model_copy(update={"text": cut}))
            remaining -= count_tokens(header + cut) + 1
        break
    chosen.tokens = budget_tokens - remaining
    return chosen
