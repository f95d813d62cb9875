"""Greedy and sampled decoding of a batch on ``OnnxDecoder``, streaming each row as it goes.

The loop reuses the KV cache of the last prompt it saw for any shared beginning
(the QA prompt's instructions, or a follow-up question over the same evidence),
so only the new part of a prompt is prefilled. Rows leave the batch as soon as
they finish, so a short answer never pays for a long one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from models.generator import GenerationConfig
from models.onnx_decoder import CachedPrefix, OnnxDecoder
from models.streaming import RowText


class PrefixStore:
    """The most recent fully prefilled prompt's cache (one entry: prompts in a service share their start)."""

    def __init__(self, min_tokens: int = 16):
        self.min_tokens = min_tokens
        self._entry: CachedPrefix | None = None
        self._lock = threading.Lock()
        self.hits = 0
        self.reused_tokens = 0

    def lookup(self, prompts: list[list[int]]) -> CachedPrefix | None:
        with self._lock:
            entry = self._entry
        if entry is None or entry.shared_length(prompts) < self.min_tokens:
            return None
        return entry

    def remember(self, entry: CachedPrefix | None, reused: int) -> None:
        with self._lock:
            if reused:
                self.hits += 1
                self.reused_tokens += reused
            if entry is not None:
                self._entry = entry


class TokenPicker:
    """Greedy argmax, or temperature / nucleus sampling from a private, optionally seeded, generator."""

    def __init__(self, config: GenerationConfig):
        import torch

        self.config = config
        self.generator = torch.Generator()
        if config.seed is not None:
            self.generator.manual_seed(config.seed)
        else:
            self.generator.seed()

    def __call__(self, logits, banned: set[int] = frozenset()) -> list[int]:
        import torch

        if banned:
            logits = logits.copy()
            logits[:, sorted(banned)] = float("-inf")
        if not self.config.do_sample:
            return logits.argmax(axis=-1).tolist()
        scores = torch.from_numpy(logits) / self.config.temperature
        probs = torch.softmax(scores, dim=-1)
        if self.config.top_p < 1.0:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            before = sorted_probs.cumsum(dim=-1) - sorted_probs
            sorted_probs[before >= self.config.top_p] = 0.0  # keeps the top token always
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(-1).tolist()


def decode_batch(
    decoder: OnnxDecoder,
    prompts: list[list[int]],
    rows: Sequence[RowText],
    config: GenerationConfig,
    eos_ids: set[int],
    is_cancelled: Sequence[Callable[[], bool]],
    prefixes: PrefixStore | None = None,
) -> None:
    """Decode every row until its EOS, stop string, token limit or cancellation."""
    prefix = prefixes.lookup(prompts) if prefixes is not None else None
    reused = prefix.shared_length(prompts) if prefix is not None else 0
    logits, batch = decoder.prefill(prompts, prefix)
    if prefixes is not None:
        longest = max(range(len(prompts)), key=lambda r: len(prompts[r]))
        prefixes.remember(decoder.prefix_of(prompts[longest], batch, longest), reused)
    pick = TokenPicker(config)
    live = list(range(len(rows)))  # batch row -> request index
    produced = 0
    while True:
        tokens = pick(logits, eos_ids if produced < config.min_new_tokens else frozenset())
        produced += 1
        going, fed = [], []
        for slot, (index, token) in enumerate(zip(live, tokens)):
            row = rows[index]
            if is_cancelled[index]():
                row.finish("cancelled")
            elif token in eos_ids:
                row.finish("stop")
            else:
                row.push(token)
            if not row.done:
                going.append(slot)
                fed.append(token)
        if not going:
            return
        if len(going) < len(live):
            batch = batch.keep(going)
            live = [live[slot] for slot in going]
        logits, batch = decoder.step(fed, batch)
