"""Turn each row of a batch into its own text stream, honouring stop strings.

A ``Job`` is one request as a backend sees it: its prompt, its ``RowText`` and how to
tell it was cancelled. ``BatchTracker`` is a stopping criterion: ``generate`` calls it after every decoding
step with all rows' tokens, so it can decode each row, hand the new text to that
request, and end a row at its own EOS, stop string or token limit while the other
rows keep going. Text that might be the start of a stop string (or half a UTF-8
character) is held back until it is safe, so no consumer ever sees a stop string.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


class RowText:
    """Incremental detokenisation of one row, emitting only text that can no longer change."""

    def __init__(self, tokenizer, stop: Sequence[str], max_new_tokens: int, emit: Callable[[str], None]):
        self.tokenizer = tokenizer
        self.stop = tuple(stop)
        self.max_new_tokens = max_new_tokens
        self.emit = emit
        self.token_ids: list[int] = []
        self.emitted = ""
        self.done = False
        self.finish_reason = "length"
        self.first_token_at: float | None = None

    def _decode(self) -> str:
        return self.tokenizer.decode(
            self.token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )

    def push(self, token_id: int) -> None:
        """Take one new token; emit what is safe; mark the row done at a stop string or the limit."""
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.token_ids.append(token_id)
        text = self._decode()
        cut = self._stop_index(text)
        if cut is not None:
            self.finish("stop", text[:cut])
        elif len(self.token_ids) >= self.max_new_tokens:
            self.finish("length", text)
        else:
            self._emit_upto(text, self._safe_length(text))

    def finish(self, reason: str, text: str | None = None) -> None:
        """End the row, flushing everything held back (already cut at any stop string)."""
        if self.done:
            return
        if text is None:
            text = self._decode()
            cut = self._stop_index(text)
            if cut is not None:
                reason, text = "stop", text[:cut]
        self._emit_upto(text, len(text))
        self.done = True
        self.finish_reason = reason

    def _emit_upto(self, text: str, end: int) -> None:
        if end > len(self.emitted) and text.startswith(self.emitted):
            piece = text[len(self.emitted):end]
            self.emitted = text[:end]
            self.emit(piece)

    def _stop_index(self, text: str) -> int | None:
        hits = [i for s in self.stop if (i := text.find(s, max(0, len(self.emitted) - len(s)))) >= 0]
        return min(hits) if hits else None

    def _safe_length(self, text: str) -> int:
        end = len(text)
        while end and text[end - 1] == "\ufffd":  # an unfinished multi-byte character
            end -= 1
        for s in self.stop:
            for k in range(min(len(s) - 1, end), 0, -1):
                if text[:end].endswith(s[:k]):
                    end = min(end, len(text[:end]) - k)
                    break
        return end


@dataclass
class Job:
    """One request as a backend decodes it: its prompt, its text stream and how to tell it was cancelled.

    ``on_abandon(callback)`` (when given) runs ``callback`` once the request is given up from
    another thread, so a backend can stop work under way for it (the onnx backend's prefill).
    """

    prompt_ids: list[int]
    text: RowText
    cancelled: Callable[[], bool]
    on_abandon: Callable[[Callable[[], None]], None] | None = None


# Between decoding steps a backend may call ``admit(room)`` for up to ``room`` newly arrived jobs.
Admit = Callable[[int], list[Job]]


class BatchTracker:
    """Per-row stop logic for a left-padded batch, used as a ``generate`` stopping criterion."""

    def __init__(self, jobs: Sequence[Job], eos_ids: frozenset[int]):
        self.jobs = list(jobs)
        self.eos_ids = eos_ids

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        last = input_ids[:, -1].tolist()
        for job, token in zip(self.jobs, last):
            row = job.text
            if row.done:
                continue
            if job.cancelled():
                row.finish("cancelled")
            elif token in self.eos_ids:
                row.finish("stop")
            else:
                row.push(token)
        return torch.tensor([job.text.done for job in self.jobs], dtype=torch.bool, device=input_ids.device)
