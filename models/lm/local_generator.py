"""``LocalGenerator``: the ``Generator`` over a local causal LM, one model per process, shared by request threads.

``__init__`` only stores settings; ``warm_up()`` loads the model once (thread-safe,
idempotent), opens the backend ``KGQA_LM_BACKEND`` picks (models/lm/backends.py) and
starts the batching worker. ``generate`` and ``stream`` are thin callers of the same
queue, so streamed pieces always add up to the generated text.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from kgqa.cancel import check_current
from kgqa.settings import Settings
from models.lm.backends import DecodingBackend, open_backend
from models.lm.batching import BatchingQueue, Join, Request
from models.lm.chat_protocol import check_messages
from models.lm.generator import Backend, Generation, GenerationConfig, Messages
from models.lm.loader import load_tokenizer
from models.lm.onnx_generation import OnnxBackend, PrefixStore
from models.lm.streaming import Job, RowText


class LocalGenerator:
    """Chat generation with a local HF causal LM (folder or GGUF) on the onnx or transformers backend, batched across threads."""

    def __init__(
        self,
        settings: Settings,
        *,
        backend: str | None = None,
        device: str | None = None,
        attention: str | None = None,
        batch_size: int | None = None,
    ):
        self.settings = settings
        self._backend_request = backend
        self._device_request = device
        self._attention_request = attention
        self.batch_size = batch_size or settings.batch_size
        self._backend: DecodingBackend | None = None
        self._tokenizer = None
        self._queue: BatchingQueue | None = None
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load the LM, open its backend and start the worker; later calls return at once."""
        if self._queue is not None:
            return
        with self._lock:
            if self._queue is not None:
                return
            self._backend = open_backend(
                self.settings,
                batch_size=self.batch_size,
                backend=self._backend_request,
                device=self._device_request,
                attention=self._attention_request,
            )
            self._tokenizer = self._backend.lm.tokenizer
            batcher = BatchingQueue(self._run_batch, batch_size=self.batch_size)
            batcher.start()
            self._queue = batcher

    def close(self) -> None:
        if self._queue is not None:
            self._queue.close()

    # -- what runs -------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        self.warm_up()
        return self._backend.lm.model_name

    @property
    def backend(self) -> Backend:
        """``onnx`` or ``transformers``: what decodes greedy and sampled answers."""
        self.warm_up()
        return self._backend.name

    @property
    def backend_reason(self) -> str:
        """Why that backend: the setting, or what ``auto`` saw."""
        self.warm_up()
        return self._backend.reason

    @property
    def device(self) -> str:
        self.warm_up()
        return self._backend.lm.device

    @property
    def attention(self) -> str:
        """``onnxruntime`` on the onnx backend; else the transformers kernel (``sdpa``, ``sdpa-flash``, ...)."""
        self.warm_up()
        return self._backend.attention

    @property
    def batcher(self) -> BatchingQueue:
        self.warm_up()
        return self._queue

    @property
    def prefixes(self) -> PrefixStore | None:
        """The onnx backend's cache of recent prompts; the transformers backend keeps none."""
        self.warm_up()
        return self._backend.prefixes if isinstance(self._backend, OnnxBackend) else None

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
        check_messages(messages)
        text = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    # -- generation ------------------------------------------------------------------------
    def submit(self, messages: Messages, **knobs) -> Request:
        """Queue one request; its pieces arrive on ``request.iter_pieces()``."""
        return self.submit_many([messages], **knobs)[0]

    def submit_many(self, conversations: list[Messages], **knobs) -> list[Request]:
        """Queue several requests at once (all or none), so they can share one batch.

        Inside a cancel scope (``kgqa.cancel``) the requests are abandoned when it is cancelled.
        """
        self.warm_up()
        scope = check_current()
        config = GenerationConfig.build(**{"max_new_tokens": self.settings.max_new_tokens, **knobs})
        limit = getattr(self._backend.lm.model.config, "max_position_embeddings", None)
        requests = []
        for messages in conversations:
            ids = self.prompt_ids(messages)
            if limit and len(ids) + config.max_new_tokens > limit:
                raise ValueError(
                    f"prompt of {len(ids)} tokens plus {config.max_new_tokens} new tokens exceeds the model's {limit}"
                )
            requests.append(Request(ids, config))
        for request in requests:
            request.watch(scope)
        return self._queue.submit_many(requests)

    def stream(self, messages: Messages, **knobs) -> Iterator[str]:
        """Text pieces as they are decoded; the request is queued before this returns."""
        return self.submit(messages, **knobs).iter_pieces()

    def generate(self, messages: Messages, **knobs) -> Generation:
        return _collect(self.submit(messages, **knobs))

    def generate_batch(self, conversations: list[Messages], **knobs) -> list[Generation]:
        """Answer several conversations in shared batches (used by evaluation and benchmarks)."""
        return [_collect(request) for request in self.submit_many(conversations, **knobs)]

    # -- the worker's side -----------------------------------------------------------------
    def _run_batch(self, requests: list[Request], join: Join) -> None:
        """Decode requests that share decoding settings on the backend; newcomers may join between steps."""
        served = [(r, self._job(r)) for r in requests]

        def admit(room: int) -> list[Job]:
            newcomers = [(r, self._job(r)) for r in join(room)]
            served.extend(newcomers)
            return [job for _, job in newcomers]

        self._backend.decode([job for _, job in served], requests[0].config, admit)
        for request, job in served:
            job.text.finish("length")
            request.first_token_at = job.text.first_token_at
            request.new_tokens = len(job.text.token_ids)
            request.finish_reason = job.text.finish_reason

    def _job(self, request: Request) -> Job:
        text = RowText(self._backend.lm.tokenizer, request.config.stop, request.config.max_new_tokens, request.emit)
        request.generated = text.token_ids
        return Job(request.prompt_ids, text, request.cancelled.is_set, request.on_abandon)


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
