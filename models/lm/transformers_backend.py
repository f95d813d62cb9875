"""The transformers backend: each batch is one left-padded transformers ``generate`` call.

It runs every model on every device. The onnx backend uses it too, for beam search
only (models/lm/onnx_generation.py). Each row streams to its own caller through
``BatchTracker``; beams cannot stream, so each beam-searched row is emitted when done.
Requests that arrive while a batch decodes wait for the next batch.
"""

from __future__ import annotations

import contextlib

from models.lm.generator import Backend, GenerationConfig
from models.lm.loader import LoadedLM
from models.lm.streaming import Admit, BatchTracker, Job


class DecodeThreads:
    """Prefill with every intra-op thread, decode with fewer.

    Prefill is a few large matmuls that split well across cores; a decode step is
    ~400 tiny ops on a 135M model, where waking a second OpenMP thread per op costs
    more than it saves and, on a shared machine, stalls on a descheduled thread.
    Measured on the shared 2-core AMD EPYC (``bench/generate.py``, ``transformers``
    against ``plain``): same greedy answers, up to ~20x faster decoding under heavy
    sharing and as fast when idle; so the transformers backend decodes on one
    thread on CPU. Use ``with policy.session():`` around ``generate`` and pass
    ``policy`` among its stopping criteria: its first call happens right after prefill.
    """

    def __init__(self, decode_threads: int | None):
        self.decode_threads = decode_threads

    @classmethod
    def for_device(cls, device: str) -> DecodeThreads:
        """One decode thread on CPU; on CUDA the thread count does not matter."""
        return cls(1 if device == "cpu" else None)

    @contextlib.contextmanager
    def session(self):
        """Restore the intra-op thread count the prefill ran with, however ``generate`` ends."""
        import torch

        saved = torch.get_num_threads()
        try:
            yield self
        finally:
            torch.set_num_threads(saved)

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        if self.decode_threads and torch.get_num_threads() != self.decode_threads:
            torch.set_num_threads(self.decode_threads)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


class TransformersBackend:
    """Greedy, sampled and beam-search decoding of a batch with transformers ``generate``."""

    name: Backend = "transformers"

    def __init__(self, lm: LoadedLM, reason: str):
        self.lm = lm
        self.reason = reason
        self.threads = DecodeThreads.for_device(lm.device)

    @property
    def attention(self) -> str:
        return self.lm.attention

    def decode(self, jobs: list[Job], config: GenerationConfig, admit: Admit | None = None) -> None:
        """Decode ``jobs`` (which share ``config``) in one call; ``admit`` is never called here."""
        import torch

        lm = self.lm
        padded = lm.tokenizer.pad({"input_ids": [job.prompt_ids for job in jobs]}, return_tensors="pt")
        kwargs = dict(
            input_ids=padded["input_ids"].to(lm.model.device),
            attention_mask=padded["attention_mask"].to(lm.model.device),
            max_new_tokens=max(job.text.max_new_tokens for job in jobs),
            min_new_tokens=config.min_new_tokens or None,
            num_beams=config.num_beams,
            do_sample=config.do_sample,
            pad_token_id=lm.tokenizer.pad_token_id,
        )
        if config.do_sample:
            kwargs.update(temperature=config.temperature, top_p=config.top_p)
        if config.seed is not None:
            torch.manual_seed(config.seed)
        with torch.inference_mode():
            if config.num_beams > 1:
                output = lm.model.generate(**kwargs)
                for job, tokens in zip(jobs, output[:, padded["input_ids"].shape[1]:].tolist()):
                    row = job.text
                    for token in tokens:
                        if token in lm.eos_ids or row.done:
                            break
                        row.push(token)
                    row.finish("stop" if not row.done else row.finish_reason)
            else:
                tracker = BatchTracker(jobs, lm.eos_ids)
                with self.threads.session():
                    lm.model.generate(**kwargs, stopping_criteria=[self.threads, tracker])
