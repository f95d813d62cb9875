"""What every text generator promises: chat messages in, text (whole or streamed) out.

The QA engine and the service code against the ``Generator`` protocol, so a test
can hand them a fake and a deployment can swap the backend without touching them.
Every generator says what actually runs: ``backend``, ``device``, ``attention`` and
``model_name``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

Messages = Sequence[dict]
# What decodes: onnxruntime's decoder (models/lm/onnx_*.py), transformers ``generate``, llama.cpp in
# process (models/lm/llamacpp.py) or an OpenAI-compatible server (models/lm/remote.py).
Backend = Literal["onnx", "transformers", "llamacpp", "openai"]


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding knobs for one request; frozen so a queued request cannot change under the worker."""

    max_new_tokens: int = 96
    # EOS is suppressed until this many tokens exist: fixed-length runs for throughput benchmarks.
    min_new_tokens: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    num_beams: int = 1
    stop: tuple[str, ...] = ()
    # Seeded sampling runs alone in its batch so the random stream is the request's own.
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError("min_new_tokens must be between 0 and max_new_tokens")
        if self.num_beams < 1:
            raise ValueError("num_beams must be at least 1")
        if self.do_sample and self.temperature <= 0:
            raise ValueError("temperature must be positive when sampling")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        object.__setattr__(self, "stop", tuple(s for s in (self.stop or ()) if s))

    @property
    def batch_key(self) -> tuple:
        """Requests with equal keys can share one batched ``generate`` call."""
        if self.num_beams > 1 or self.seed is not None:
            return ("alone", id(self))
        if not self.do_sample:
            return ("greedy", self.min_new_tokens)
        return ("sample", self.temperature, self.top_p, self.min_new_tokens)

    @classmethod
    def build(cls, *, stop: str | Sequence[str] | None = None, **knobs) -> "GenerationConfig":
        """Accept ``stop`` as one string or many, as OpenAI-style callers send it."""
        stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
        return cls(stop=stops, **knobs)


@dataclass
class Generation:
    """One finished answer plus the numbers the service reports."""

    text: str
    prompt_tokens: int
    new_tokens: int
    first_token_s: float
    total_s: float
    finish_reason: str = "stop"  # "stop" (EOS or stop string) or "length"


@runtime_checkable
class Generator(Protocol):
    """A causal LM behind a chat interface; implementations are lazy and thread-safe."""

    model_name: str
    backend: Backend
    device: str
    attention: str

    def warm_up(self) -> None: ...

    def generate(self, messages: Messages, **knobs) -> Generation: ...

    def stream(self, messages: Messages, **knobs) -> Iterator[str]: ...

    def count_tokens(self, text: str) -> int: ...
