"""The transformers backend of ``Generator``: one model per process, shared by request threads.

``__init__`` only stores settings; ``warm_up()`` loads the model once (thread-safe,
idempotent) and starts the batching worker. ``generate`` and ``stream`` are thin
callers of the same queue, so streamed pieces always add up to the generated text.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from kgqa.settings import Settings
from models.lm.batching import BatchingQueue, Join, Request
from models.lm.generator import Generation, GenerationConfig, Messages
from models.lm.loader import LoadedLM, load_lm, load_tokenizer
from models.lm.onnx_generation import Job, PrefixStore, decode_batch
from models.lm.speedups import DecodeThreads
from models.lm.streaming import BatchTracker, RowText


class TransformersGenerator:
    """Chat generation with a local HF causal LM (folder or GGUF), batched across threads."""

    def __init__(
        self,
        settings: Settings,
        *,
        device: str | None = None,
        speedup: str | None = None,
        attention: str | None = None,
        batch_size: int | None = None,
        queue_size: int | None = None,
    ):
        self.settings = settings
        self._device_request = device
        self._speedup_request = speedup
        self._attention_request = attention
        self.batch_size = batch_size or settings.batch_size
        self.queue_size = queue_size or settings.queue_size
        self._lm: LoadedLM | None = None
        self._tokenizer = None
        self._queue: BatchingQueue | None = None
        self._lock = threading.Lock()
        self.prefixes = PrefixStore()

    # -- lifecycle -------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load the LM and start the worker; later calls return at once."""
        if self._queue is not None:
            return
        with self._lock:
            if self._queue is not None:
                return
            lm = load_lm(
                self.settings,
                device=self._device_request,
                attention=self._attention_request,
                speedup=self._speedup_request,
            )
            self._lm, self._tokenizer = lm, lm.tokenizer
            batcher = BatchingQueue(self._run_batch, batch_size=self.batch_size, queue_size=self.queue_size)
            batcher.start()
            self._queue = batcher

    def close(self) -> None:
        if self._queue is not None:
            self._queue.close()

    @property
    def ready(self) -> bool:
        return self._queue is not None

    @property
    def model_name(self) -> str:
        self.warm_up()
        return self._lm.model_name

    @property
    def device(self) -> str:
        self.warm_up()
        return self._lm.device

    @property
    def attention(self) -> str:
        self.warm_up()
        return self._lm.attention

    @property
    def speedup(self) -> str:
        self.warm_up()
        return self._lm.speedup

    @property
    def batcher(self) -> BatchingQueue:
        self.warm_up()
        return self._queue

    # -- tokens ----------------------------------------------------------------------------
    @property
    def tokenizer(self):
        """The tokenizer alone loads in well under a second, so counting never waits for the model."""
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    from kgqa.assets import resolve_lm

                    self._tokenizer = load_tokenizer(resolve_lm(self.settings))
        return self._tokenizer

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, messages: Messages) -> list[int]:
        """The chat-templated prompt, ending with the assistant's turn header."""
        _check_messages(messages)
        text = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    # -- generation ------------------------------------------------------------------------
    def submit(self, messages: Messages, **knobs) -> Request:
        """Queue one request; raises ``Overloaded`` when the queue is full."""
        return self.submit_many([messages], **knobs)[0]

    def submit_many(self, conversations: list[Messages], **knobs) -> list[Request]:
        """Queue several requests at once (all or none), so they can share one batch."""
        self.warm_up()
        config = GenerationConfig.build(**{"max_new_tokens": self.settings.max_new_tokens, **knobs})
        limit = getattr(self._lm.model.config, "max_position_embeddings", None)
        requests = []
        for messages in conversations:
            ids = self.prompt_ids(messages)
            if limit and len(ids) + config.max_new_tokens > limit:
                raise ValueError(
                    f"prompt of {len(ids)} tokens plus {config.max_new_tokens} new tokens exceeds the model's {limit}"
                )
            requests.append(Request(ids, config))
        return self._queue.submit_many(requests)

    def stream(self, messages: Messages, **knobs) -> Iterator[str]:
        """Text pieces as they are decoded; the request is queued (or refused) before this returns."""
        return self.submit(messages, **knobs).iter_pieces()

    def generate(self, messages: Messages, **knobs) -> Generation:
        return _collect(self.submit(messages, **knobs))

    def generate_batch(self, conversations: list[Messages], **knobs) -> list[Generation]:
        """Answer several conversations in shared batches (used by evaluation and benchmarks)."""
        return [_collect(request) for request in self.submit_many(conversations, **knobs)]

    # -- the worker's side -----------------------------------------------------------------
    def _run_batch(self, requests: list[Request], join: Join | None = None) -> None:
        """Decode requests that share decoding settings together: onnx decoder, else one ``generate``.

        On the onnx decoder, requests that arrive meanwhile join between steps (``join``).
        """
        lm, config = self._lm, requests[0].config
        served = [(r, self._job(r)) for r in requests]
        if lm.decoder is not None and config.num_beams == 1:
            def admit(room: int) -> list[Job]:
                newcomers = [(r, self._job(r)) for r in (join(room) if join is not None else [])]
                served.extend(newcomers)
                return [job for _, job in newcomers]

            decode_batch(lm.decoder, [job for _, job in served], config, self._eos_ids(), self.prefixes,
                         admit=admit, batch_size=self.batch_size)
        else:
            self._generate(requests, [job.text for _, job in served])
        for request, job in served:
            job.text.finish("length")
            request.first_token_at = job.text.first_token_at
            request.new_tokens = len(job.text.token_ids)
            request.finish_reason = job.text.finish_reason

    def _job(self, request: Request) -> Job:
        text = RowText(self._lm.tokenizer, request.config.stop, request.config.max_new_tokens, request.emit)
        return Job(request.prompt_ids, text, request.cancelled.is_set)

    def _generate(self, requests: list[Request], rows: list[RowText]) -> None:
        """One left-padded transformers ``generate`` call (beam search, or models without the onnx decoder)."""
        import torch

        lm, config = self._lm, requests[0].config
        padded = lm.tokenizer.pad({"input_ids": [r.prompt_ids for r in requests]}, return_tensors="pt")
        kwargs = dict(
            input_ids=padded["input_ids"].to(lm.model.device),
            attention_mask=padded["attention_mask"].to(lm.model.device),
            max_new_tokens=max(r.config.max_new_tokens for r in requests),
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
            if config.num_beams > 1:  # transformers cannot stream beams: emit each row when done
                output = lm.model.generate(**kwargs)
                for row, tokens in zip(rows, output[:, padded["input_ids"].shape[1]:].tolist()):
                    for token in tokens:
                        if token in self._eos_ids() or row.done:
                            break
                        row.push(token)
                    row.finish("stop" if not row.done else row.finish_reason)
            else:
                tracker = BatchTracker(rows, self._eos_ids(), [r.cancelled.is_set for r in requests])
                threads = DecodeThreads.for_speedup(lm.speedup, lm.device)
                with threads.session():
                    lm.model.generate(**kwargs, stopping_criteria=[threads, tracker])

    def _eos_ids(self) -> set[int]:
        eos = self._lm.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
        if self._lm.tokenizer.eos_token_id is not None:
            ids.add(self._lm.tokenizer.eos_token_id)
        return ids


def _collect(request: Request) -> Generation:
    """Wait for a request's pieces; times count from submission, queueing included."""
    text = "".join(request.iter_pieces())
    done = time.perf_counter()
    first = request.first_token_at or done
    return Generation(
        text=text,
        prompt_tokens=len(request.prompt_ids),
        new_tokens=request.new_tokens,
        first_token_s=first - request.submitted_at,
        total_s=done - request.submitted_at,
        finish_reason=request.finish_reason,
    )


def _check_messages(messages: Messages) -> None:
    if not messages:
        raise ValueError("messages must hold at least one {'role', 'content'} turn")
    for turn in messages:
        if not isinstance(turn, dict) or not isinstance(turn.get("role"), str) or not isinstance(turn.get("content"), str):
            raise ValueError("each message must be a dict with string 'role' and 'content'")
