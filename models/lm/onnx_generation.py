"""The onnx backend: greedy and sampled decoding of a batch on ``OnnxDecoder``, streaming each row as it goes.

The loop reuses the KV cache of the last prompt it saw for any shared beginning
(the QA prompt's instructions, or a follow-up question over the same evidence),
so only the new part of a prompt is prefilled. Rows leave the batch as soon as
they finish, so a short answer never pays for a long one, and requests that
arrive meanwhile join between steps (continuous batching), so a newcomer waits
for one step and its own prefill, not for the running answers. Beam search is the
one thing this decoder does not do: ``OnnxBackend`` hands it to transformers ``generate``.
"""

from __future__ import annotations

import threading

import numpy as np

from models.lm.generator import Backend, GenerationConfig
from models.lm.loader import LoadedLM
from models.lm.onnx_decoder import CachedPrefix, OnnxDecoder
from models.lm.streaming import Admit, Job
from models.lm.transformers_backend import TransformersBackend


class PrefixStore:
    """The caches of the last few fully prefilled prompts; a new prompt reuses the one it shares most with.

    A few entries cover the usual reuse: every QA prompt starts with the same
    instructions, and a chat follow-up starts with the earlier turns. Each entry
    is one prompt's KV cache (about 45 KB per token for the bundled model).
    """

    def __init__(self, entries: int = 4, min_tokens: int = 16):
        self.capacity = entries
        self.min_tokens = min_tokens
        self._entries: list[CachedPrefix] = []  # most recently used last
        self._lock = threading.Lock()
        self.hits = 0
        self.reused_tokens = 0

    def lookup(self, prompts: list[list[int]]) -> CachedPrefix | None:
        """The entry sharing the most leading tokens with every prompt, if it shares ``min_tokens``."""
        with self._lock:
            entries = list(self._entries)
        best = max(entries, key=lambda entry: entry.shared_length(prompts), default=None)
        if best is None or best.shared_length(prompts) < self.min_tokens:
            return None
        with self._lock:
            if best in self._entries:
                self._entries.remove(best)
                self._entries.append(best)
        return best

    def remember(self, entry: CachedPrefix | None, reused: int) -> None:
        with self._lock:
            if reused:
                self.hits += 1
                self.reused_tokens += reused
            if entry is None:
                return
            # An entry that is a prefix of the new one adds nothing: the new one covers it.
            self._entries = [e for e in self._entries if e.token_ids != entry.token_ids[:len(e.token_ids)]]
            self._entries.append(entry)
            del self._entries[:-self.capacity]


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

    def __call__(self, logits, rows: list[int] = (), tokens: set[int] = frozenset()) -> list[int]:
        """The next token of every row; ``tokens`` are ruled out for ``rows``."""
        import torch

        if rows and tokens:
            logits = logits.copy()
            logits[np.ix_(rows, sorted(tokens))] = float("-inf")
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


class OnnxBackend:
    """The onnxruntime decoder for prefill and decode; transformers ``generate`` for beam search only."""

    name: Backend = "onnx"
    attention = "onnxruntime"

    def __init__(self, lm: LoadedLM, decoder: OnnxDecoder, reason: str, *, batch_size: int):
        self.lm = lm
        self.decoder = decoder
        self.reason = f"{reason}; beam search runs on transformers generate"
        self.batch_size = batch_size
        self.prefixes = PrefixStore()
        self.beams = TransformersBackend(lm, "beam search, which the onnx decoder does not do")

    @classmethod
    def from_lm(cls, lm: LoadedLM, reason: str, *, batch_size: int) -> OnnxBackend:
        """Build the decoder's graph and session from the loaded fp32 weights (a few seconds)."""
        import torch

        decoder = OnnxDecoder.from_model(lm.model, threads=torch.get_num_threads(), pad_id=lm.tokenizer.pad_token_id or 0)
        return cls(lm, decoder, reason, batch_size=batch_size)

    def decode(self, jobs: list[Job], config: GenerationConfig, admit: Admit | None = None) -> None:
        """Decode ``jobs`` (which share ``config``); ``admit`` adds newly arrived jobs between steps."""
        if config.num_beams > 1:
            self.beams.decode(jobs, config)
        else:
            decode_batch(self.decoder, jobs, config, self.lm.eos_ids, self.prefixes, admit, self.batch_size)


def decode_batch(
    decoder: OnnxDecoder,
    jobs: list[Job],
    config: GenerationConfig,
    eos_ids: frozenset[int],
    prefixes: PrefixStore | None = None,
    admit: Admit | None = None,
    batch_size: int = 1,
) -> None:
    """Decode every job until its EOS, stop string, token limit or cancellation.

    Between steps, ``admit(room)`` may hand over newly arrived jobs: they are
    prefilled and join the running batch, so nobody waits for a whole answer.
    """
    pick = TokenPicker(config)
    logits, batch = _prefill(decoder, jobs, prefixes)
    if batch is None:  # every job was given up during its prefill
        return
    jobs, fed, batch = _take_tokens(pick, logits, jobs, batch, config.min_new_tokens, eos_ids)
    while True:
        if admit is not None and len(jobs) < batch_size and (newcomers := admit(batch_size - len(jobs))):
            new_logits, new_batch = _prefill(decoder, newcomers, prefixes)
            if new_batch is not None:
                newcomers, new_fed, new_batch = _take_tokens(pick, new_logits, newcomers, new_batch,
                                                             config.min_new_tokens, eos_ids)
            if newcomers and new_batch is not None:
                batch = batch.merge(new_batch) if jobs else new_batch
                jobs, fed = jobs + newcomers, fed + new_fed
        if not jobs:
            return
        logits, batch = decoder.step(fed, batch)
        jobs, fed, batch = _take_tokens(pick, logits, jobs, batch, config.min_new_tokens, eos_ids)


def _take_tokens(pick: TokenPicker, logits, jobs: list[Job], batch, min_new_tokens: int, eos_ids: frozenset[int]):
    """Pick each row's next token and hand it over; returns the jobs still going, their tokens and cache."""
    banned = [slot for slot, job in enumerate(jobs) if len(job.text.token_ids) < min_new_tokens]
    tokens = pick(logits, banned, eos_ids)
    going = [slot for slot, (job, token) in enumerate(zip(jobs, tokens)) if _advance(job, token, eos_ids)]
    if len(going) < len(jobs):
        batch = batch.keep(going)
    return [jobs[slot] for slot in going], [tokens[slot] for slot in going], batch


def _prefill(decoder: OnnxDecoder, jobs: list[Job], prefixes: PrefixStore | None):
    """Prefill ``jobs`` (reusing a cached prefix when they share one) and remember the longest prompt.

    Once every one of them is abandoned (``Job.on_abandon``) the prefill stops where it is; then
    each job is finished as cancelled and ``(None, None)`` returned.
    """
    prompts = [job.prompt_ids for job in jobs]
    prefix = prefixes.lookup(prompts) if prefixes is not None else None
    try:
        logits, batch = decoder.prefill(prompts, prefix, _stoppable(jobs))
    except Exception:
        if not all(job.cancelled() for job in jobs):
            raise
        for job in jobs:  # onnxruntime stopped at our request (RunOptions.terminate)
            job.text.finish("cancelled")
        return None, None
    if prefixes is not None:
        reused = prefix.shared_length(prompts) if prefix is not None else 0
        longest = max(range(len(prompts)), key=lambda r: len(prompts[r]))
        prefixes.remember(decoder.prefix_of(prompts[longest], batch, longest), reused)
    return logits, batch


def _stoppable(jobs: list[Job]):
    """onnxruntime ``RunOptions`` that a job's abandonment terminates once every job is abandoned."""
    import onnxruntime as ort

    options = ort.RunOptions()

    def stop_if_all_gone() -> None:
        if all(job.cancelled() for job in jobs):
            options.terminate = True

    for job in jobs:
        if job.on_abandon is not None:
            job.on_abandon(stop_if_all_gone)
    return options


def _advance(job: Job, token: int, eos_ids: frozenset[int]) -> bool:
    """Give ``token`` to the job's text; True while the job goes on."""
    if job.cancelled():
        job.text.finish("cancelled")
    elif token in eos_ids:
        job.text.finish("stop")
    else:
        job.text.push(token)
    return not job.text.done
