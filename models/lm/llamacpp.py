"""``LlamaCppGenerator``: any GGUF model on llama.cpp's own quantised kernels, in process (xllamacpp).

``KGQA_LM_BACKEND=llamacpp`` (or ``auto`` for a GGUF the onnx decoder refuses, see
models/lm/backends.py) runs the GGUF named by ``KGQA_LM_PATH`` (or the bundled one) with
llama.cpp's server engine, embedded by the ``xllamacpp`` wheel (prebuilt for CPU, no
compiler): every architecture llama.cpp knows, on the quantised weights as they are,
never dequantised.

- Concurrency: the engine has ``KGQA_BATCH_SIZE`` slots decoded together (continuous
  batching) over one KV pool of ``CONTEXT_TOKENS`` tokens that every slot draws from;
  request threads call it directly (the calls release the GIL), more requests than slots
  wait inside llama.cpp.
- Streaming: the engine calls back with each chunk (OpenAI ``chat.completion.chunk``);
  a thread per stream hands them to the reading thread. Closing the stream makes the next
  callback answer "stop", which ends the request and frees its slot. Inside a cancel scope
  (``kgqa.cancel``) cancelling does the same, and the reader gets ``Cancelled`` at once.
  A prompt is prefilled in chunks of ``PREFILL_CHUNK_TOKENS``, each reported back
  (``return_progress``), so a request given up during its prefill stops at the end of the
  chunk under way rather than after the whole prompt.
- Stops: sent as ``stop`` and cut here too (models/lm/chat_protocol.py), like the remote generator.
- Threads: one thread decodes and half the cores prefill, none spinning between steps
  (``poll = 0``). Measured on the shared 2-core machine (load average 5-8): decoding ran at
  59-85 tokens/s on one thread and 5-53 on two; a 459-token prompt prefilled in 4.0-4.8 s on
  one thread and 5.2-6.3 s on two; llama.cpp's default spinning pool decoded at 1.5 tokens/s.
- The engine also listens on a loopback port (llama.cpp's server always does); it takes a
  random port and a random API key, so nothing else can use it. Token counting asks its
  ``/tokenize`` endpoint, which is the model's own tokenizer whatever the architecture.

``python -m models.lm.llamacpp GGUF --port 8080`` serves a GGUF over the OpenAI protocol
on its own, e.g. for ``KGQA_LM_URL`` (the remote tests start it this way).
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from kgqa.assets import AssetMissing, bundled_gguf_path, resolve_lm
from kgqa.cancel import check_current
from kgqa.errors import Cancelled
from kgqa.usage import record
from kgqa.settings import Settings
from models.lm.chat_protocol import MalformedAnswer, StopText, chat_request, read_chunk
from models.lm.generator import Generation, GenerationConfig, Messages

log = logging.getLogger(__name__)

CONTEXT_TOKENS = 8192  # the KV pool the slots share
# Tokens prefilled between two callbacks, so between two chances to stop a request given up. The
# 135M GGUF prefilled a 630-token prompt on one thread in 6.9-7.9 s with llama.cpp's default
# 512-token micro-batches and in 6.9 s with 256 (side by side, this 2-core CPU): no loss in speed, and a
# request given up mid-prompt stops within one chunk (~3 s here) instead of after all of it.
PREFILL_CHUNK_TOKENS = 256
DECODE_THREADS = 1
HTTP_THREADS = 2
_END = object()
_ABANDONED = object()


def gguf_path(settings: Settings) -> Path:
    """The GGUF file to run: ``KGQA_LM_PATH``'s, else the bundled one (llama.cpp reads GGUF only)."""
    if not settings.lm_path:
        return bundled_gguf_path()
    source = resolve_lm(settings)
    if source.gguf_file is None:
        raise AssetMissing(f"llama.cpp runs GGUF files; KGQA_LM_PATH={settings.lm_path!r} is a Hugging Face folder")
    return source.folder / source.gguf_file


def open_engine(gguf: Path, *, slots: int, context: int = CONTEXT_TOKENS, decode_threads: int = DECODE_THREADS,
                prefill_threads: int | None = None, host: str = "127.0.0.1", port: int = 0, api_key: str = ""):
    """Load ``gguf`` into llama.cpp's server engine (``xllamacpp.Server``), listening on ``host:port``."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.n_parallel = slots
    params.kv_unified = True  # one pool: a long prompt may use what idle slots do not
    params.n_ctx = context
    params.n_batch = params.n_ubatch = PREFILL_CHUNK_TOKENS
    params.cpuparams.n_threads = decode_threads
    params.cpuparams_batch.n_threads = prefill_threads or max(1, (os.cpu_count() or 2) // 2)
    params.cpuparams.poll = 0
    params.cpuparams_batch.poll = 0
    params.hostnames = [host]
    params.port = port
    params.n_threads_http = HTTP_THREADS
    params.api_keys = [api_key] if api_key else []
    params.verbosity = -1  # llama.cpp's own log is per token; kgqa logs what matters
    return xllamacpp.Server(params)


class LlamaCppGenerator:
    """The ``Generator`` over a GGUF run in process by llama.cpp; lazy, thread-safe."""

    backend = "llamacpp"
    device = "cpu"
    attention = "llama.cpp"

    def __init__(self, settings: Settings, *, slots: int | None = None, decode_threads: int = DECODE_THREADS,
                 prefill_threads: int | None = None, cache_prompts: bool = True, reason: str = "KGQA_LM_BACKEND=llamacpp"):
        self.settings = settings
        self.slots = slots or settings.batch_size
        self.decode_threads = decode_threads
        self.prefill_threads = prefill_threads
        self.cache_prompts = cache_prompts  # reuse a slot's KV for a shared prompt prefix; benchmarks turn it off
        self.backend_reason = reason
        self._engine = None
        self._gguf: Path | None = None
        self._api_key = secrets.token_urlsafe(24)
        self._http = None
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    def warm_up(self) -> None:
        if self._engine is not None:
            return
        with self._lock:
            if self._engine is not None:
                return
            import httpx2

            gguf = gguf_path(self.settings)
            started = time.perf_counter()
            engine = open_engine(gguf, slots=self.slots, decode_threads=self.decode_threads,
                                 prefill_threads=self.prefill_threads, api_key=self._api_key)
            self._http = httpx2.Client(base_url=engine.listening_address, timeout=30,
                                       headers={"Authorization": f"Bearer {self._api_key}"})
            log.info("%s runs on llama.cpp (%s; %d slots, %d-token KV pool), loaded in %.1f s",
                     gguf.name, self.backend_reason, self.slots, CONTEXT_TOKENS, time.perf_counter() - started)
            self._gguf = gguf
            self._engine = engine

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    @property
    def model_name(self) -> str:
        return gguf_path(self.settings).name if self._gguf is None else self._gguf.name

    # -- tokens ----------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """The model's own tokenizer (llama.cpp's ``/tokenize``), whatever the architecture."""
        self.warm_up()
        response = self._http.post("/tokenize", json={"content": text, "add_special": False})
        response.raise_for_status()
        return len(response.json()["tokens"])

    # -- generation ------------------------------------------------------------------------
    def stream(self, messages: Messages, **knobs) -> LlamaCppStream:
        """Text pieces as llama.cpp decodes them; the request is queued before this returns."""
        self.warm_up()
        config = GenerationConfig.build(**{"max_new_tokens": self.settings.max_new_tokens, **knobs})
        body = _request(messages, config)
        body["cache_prompt"] = self.cache_prompts
        scope = check_current()
        stream = LlamaCppStream(self._engine, body, config.stop)
        if scope is not None:
            scope.on_cancel(stream.abandon)
        return stream

    def generate(self, messages: Messages, **knobs) -> Generation:
        return self.stream(messages, **knobs).collect()

    def generate_batch(self, conversations: list[Messages], **knobs) -> list[Generation]:
        """Several conversations at once: they share the engine's slots (used by benchmarks)."""
        streams = [self.stream(messages, **knobs) for messages in conversations]
        return [s.collect() for s in streams]


def _request(messages: Messages, config: GenerationConfig) -> dict:
    """The chat-completions body, plus what only llama.cpp takes: a fixed length (``ignore_eos``) and usage."""
    fixed = config.min_new_tokens == config.max_new_tokens and config.min_new_tokens > 0
    if config.min_new_tokens and not fixed:
        raise ValueError("llama.cpp takes min_new_tokens only equal to max_new_tokens (a fixed length)")
    body = chat_request(messages, replace(config, min_new_tokens=0), stream=True)
    body["stream_options"] = {"include_usage": True}
    body["return_progress"] = True  # a callback per prefilled chunk: a request given up stops mid-prompt
    if fixed:
        body["ignore_eos"] = True
    return body


class LlamaCppStream(Iterator[str]):
    """One request on the engine, decoded on its own thread; pieces are read here, cut at stop strings."""

    def __init__(self, engine, body: dict, stop: tuple[str, ...]):
        self.submitted_at = time.perf_counter()
        self.first_token_at: float | None = None  # when the engine handed over the first text
        self.last_chunk_at: float | None = None
        self.finish_reason = "stop"
        self.prompt_tokens = 0
        self.new_tokens = 0
        self._chunks: queue.SimpleQueue = queue.SimpleQueue()
        self._cancelled = threading.Event()
        self._cut = StopText(stop)
        self._pieces = self._read()
        self._thread = threading.Thread(target=self._run, args=(engine, body), name="llamacpp-request", daemon=True)
        self._thread.start()

    def _run(self, engine, body: dict) -> None:
        def on_chunk(chunk) -> bool:
            self._chunks.put((time.perf_counter(), chunk))
            return self._cancelled.is_set()  # True ends the request and frees its slot

        try:
            engine.handle_chat_completions(body, on_chunk)
        except Exception as exc:  # handed to the reader, raised there
            self._chunks.put((time.perf_counter(), exc))
        finally:
            self._chunks.put((time.perf_counter(), _END))

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        self._cancelled.set()
        self._pieces.close()

    def abandon(self) -> None:
        """Give the request up from any thread: the engine's next callback ends it; the reader gets ``Cancelled`` now."""
        self._cancelled.set()
        self._chunks.put((time.perf_counter(), _ABANDONED))

    def collect(self) -> Generation:
        """Read to the end: the whole answer with its counts, and times from submission to the engine's chunks."""
        text = "".join(self)
        done = self.last_chunk_at or time.perf_counter()
        return Generation(text=text, prompt_tokens=self.prompt_tokens, new_tokens=self.new_tokens,
                          first_token_s=(self.first_token_at or done) - self.submitted_at,
                          total_s=done - self.submitted_at, finish_reason=self.finish_reason)

    def _read(self) -> Iterator[str]:
        try:
            while True:
                self.last_chunk_at, chunk = self._chunks.get()
                if chunk is _END:
                    break
                if chunk is _ABANDONED:
                    raise Cancelled("the request was cancelled: its client went away")
                if isinstance(chunk, Exception):
                    raise chunk
                answer = _read_engine_chunk(chunk)
                if answer.text and self.first_token_at is None:
                    self.first_token_at = self.last_chunk_at
                self.finish_reason = "length" if answer.finish_reason == "length" else self.finish_reason
                self.prompt_tokens = answer.prompt_tokens or self.prompt_tokens
                self.new_tokens = answer.new_tokens or self.new_tokens
                piece = self._cut.feed(answer.text)
                if piece:
                    yield piece
                if self._cut.stopped:
                    self.finish_reason = "stop"
                    return
            tail = self._cut.flush()
            if tail:
                yield tail
        finally:
            self._cancelled.set()
            record(self.prompt_tokens, self.new_tokens)  # kgqa.usage: the engine's own counts


def _read_engine_chunk(chunk: object):
    """A chunk, or the engine's error as the exception a caller expects (a bad request is a ValueError)."""
    if isinstance(chunk, dict) and isinstance(chunk.get("error"), dict):
        error = chunk["error"]
        message = " ".join(str(error.get("message", "llama.cpp failed")).split())
        if 400 <= int(error.get("code") or 500) < 500:
            raise ValueError(message)
        raise RuntimeError(f"llama.cpp: {message}")
    try:
        return read_chunk(chunk)
    except MalformedAnswer as exc:
        raise RuntimeError(f"llama.cpp answered a malformed chunk: {exc}") from None


def main(argv: list[str] | None = None) -> None:
    """Serve a GGUF over the OpenAI protocol on ``host:port`` until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m models.lm.llamacpp", description=main.__doc__)
    parser.add_argument("gguf", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--context", type=int, default=CONTEXT_TOKENS)
    parser.add_argument("--decode-threads", type=int, default=DECODE_THREADS)
    args = parser.parse_args(argv)
    engine = open_engine(args.gguf, slots=args.slots, context=args.context, decode_threads=args.decode_threads,
                         host=args.host, port=args.port)
    print(f"serving {args.gguf.name} on {engine.listening_address}/v1", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
