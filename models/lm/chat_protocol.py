"""Chat messages and the OpenAI chat-completions format, shared by the generators that speak it.

``check_messages`` is the one check of a conversation's shape, for every generator. A request body from chat messages and a ``GenerationConfig``; the text, finish reason
and token counts out of a whole answer or a stream chunk, with anything else (no
``choices``, an ``error`` object, a wrong type) refused as a ``MalformedAnswer`` whose
message says what was wrong; and ``StopText``, which cuts a text stream at the first
stop string on the client's side, since some servers ignore ``stop``.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.lm.generator import GenerationConfig, Messages

# The OpenAI API takes at most four stop strings; the client cuts at every one of them anyway.
MAX_SENT_STOPS = 4


class MalformedAnswer(ValueError):
    """A chat-completions answer or chunk that is not the documented shape (or is an ``error`` object)."""


def check_messages(messages: Messages) -> None:
    """Chat messages are a non-empty list of ``{"role": str, "content": str}``; anything else is a ValueError."""
    if not messages:
        raise ValueError("messages must hold at least one {'role', 'content'} turn")
    for turn in messages:
        if not isinstance(turn, dict) or not isinstance(turn.get("role"), str) or not isinstance(turn.get("content"), str):
            raise ValueError("each message must be a dict with string 'role' and 'content'")


def chat_request(messages: Messages, config: GenerationConfig, *, model: str = "", stream: bool) -> dict:
    """The ``/v1/chat/completions`` body for these messages and decoding settings.

    Greedy decoding is ``temperature: 0``. Beam search and a minimum length are not part of
    the protocol: asking for them is a ValueError rather than a silently different answer.
    """
    check_messages(messages)
    if config.num_beams > 1:
        raise ValueError("beam search is not available over the chat-completions protocol")
    if config.min_new_tokens:
        raise ValueError("min_new_tokens is not available over the chat-completions protocol")
    body: dict = {
        "messages": [{"role": turn["role"], "content": turn["content"]} for turn in messages],
        "max_tokens": config.max_new_tokens,
        "stream": stream,
    }
    if model:
        body["model"] = model
    if config.do_sample:
        body["temperature"] = config.temperature
        body["top_p"] = config.top_p
        if config.seed is not None:
            body["seed"] = config.seed
    else:
        body["temperature"] = 0.0
    if config.stop:
        body["stop"] = list(config.stop[:MAX_SENT_STOPS])
    return body


@dataclass(frozen=True)
class Answer:
    """What one whole answer or one stream chunk carries."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    new_tokens: int | None = None


def read_completion(payload: object) -> Answer:
    """The assistant's text of a whole (non-streamed) chat completion."""
    choice = _first_choice(payload, required=True)
    message = choice.get("message")
    if not isinstance(message, dict):
        raise MalformedAnswer("its choice has no 'message' object")
    return Answer(_text(message.get("content")), _finish(choice), *_usage(payload))


def read_chunk(payload: object) -> Answer:
    """The new text of one ``chat.completion.chunk``; a chunk without choices (usage only) carries none."""
    choice = _first_choice(payload, required=False)
    if choice is None:
        return Answer("", None, *_usage(payload))
    delta = choice.get("delta")
    if delta is not None and not isinstance(delta, dict):
        raise MalformedAnswer("its choice's 'delta' is not an object")
    return Answer(_text((delta or {}).get("content")), _finish(choice), *_usage(payload))


def _first_choice(payload: object, *, required: bool) -> dict | None:
    if not isinstance(payload, dict):
        raise MalformedAnswer(f"it is a JSON {type(payload).__name__}, not an object")
    if "error" in payload:
        error = payload["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise MalformedAnswer(f"it reports an error: {' '.join(str(message).split())}")
    choices = payload.get("choices")
    if not isinstance(choices, list):
        raise MalformedAnswer("it has no 'choices' list")
    if not choices:
        if required:
            raise MalformedAnswer("its 'choices' list is empty")
        return None
    if not isinstance(choices[0], dict):
        raise MalformedAnswer("its first choice is not an object")
    return choices[0]


def _text(content: object) -> str:
    if content is None:
        return ""
    if not isinstance(content, str):
        raise MalformedAnswer(f"its content is a {type(content).__name__}, not text")
    return content


def _finish(choice: dict) -> str | None:
    reason = choice.get("finish_reason")
    return reason if isinstance(reason, str) else None


def _usage(payload: dict) -> tuple[int | None, int | None]:
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None, None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (prompt if isinstance(prompt, int) else None, completion if isinstance(completion, int) else None)


class StopText:
    """Text arriving in pieces, released once it can no longer become part of a stop string.

    ``feed`` returns the newly safe text; at the first stop string the text ends there
    (``stopped`` turns true and later pieces are ignored). ``flush`` releases what was held
    back when the stream ends. The released pieces add up to the text cut at the first stop.
    """

    def __init__(self, stop: tuple[str, ...] | list[str]):
        self.stop = tuple(s for s in stop if s)
        self.text = ""
        self.released = 0
        self.stopped = False

    def feed(self, piece: str) -> str:
        if self.stopped or not piece:
            return ""
        self.text += piece
        hits = [i for s in self.stop if (i := self.text.find(s, self.released)) >= 0]
        if hits:
            self.stopped = True
            self.text = self.text[: min(hits)]
            return self._release(len(self.text))
        return self._release(len(self.text) - self._held_back())

    def flush(self) -> str:
        return self._release(len(self.text))

    def _held_back(self) -> int:
        """The longest tail of the text that is the start of a stop string."""
        tail = self.text[self.released:]
        return max((k for s in self.stop for k in range(min(len(s) - 1, len(tail)), 0, -1)
                    if tail.endswith(s[:k])), default=0)

    def _release(self, end: int) -> str:
        piece = self.text[self.released:end]
        self.released = max(self.released, end)
        return piece
