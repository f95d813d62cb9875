"""What a streamed answer sends: each sentence as soon as the engine has verified it, never the LM's raw text.

The engine's stream (``QAEngine.ask_stream``) carries three kinds of event:
``token`` (the LM's raw text: unverified, so never sent as answer text),
``sentence`` (an answer sentence verified against one evidence sentence, with
the citation that backs it) and ``result`` (the whole grounded answer). Both
streaming endpoints send the sentences as they come and then the result;
``VerifiedAnswer`` keeps the text sent so far, which is always the start of the
final answer, and says what the final answer adds to it: the abstention when no
sentence was verified, otherwise nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from app.schemas import SentenceEvent
from app.sse import KEEPALIVE, BackgroundStream, never, with_keepalives
from kgqa.records import QAResult, StreamEvent
from qa.sentences import with_markers

log = logging.getLogger(__name__)


def verified_events(stream: BackgroundStream, first, interval: float,
                    gone: Callable[[], bool] = never) -> Iterator[StreamEvent | str]:
    """The engine's ``sentence`` and ``result`` events, with ``KEEPALIVE`` after every ``interval`` s without one.

    ``token`` events are dropped here: while the LM writes tokens nothing is verified
    yet, so the connection only gets keep-alive comments. Once ``gone()`` says the client
    went away the stream is cancelled and the events end (``app.sse.with_keepalives``).
    """
    last_sent = time.monotonic()
    for item in with_keepalives(stream, first, interval, gone):
        if item is KEEPALIVE or getattr(item, "type", None) == "token":
            if time.monotonic() - last_sent >= interval:
                last_sent = time.monotonic()
                yield KEEPALIVE
            continue
        last_sent = time.monotonic()
        yield item


class VerifiedAnswer:
    """The answer text as its verified sentences arrive; joined by spaces they make the final answer."""

    def __init__(self) -> None:
        self.text = ""
        self.count = 0

    def add(self, event: StreamEvent) -> tuple[SentenceEvent, str]:
        """The ``sentence`` event as sent, and the text it adds to the answer (a space first, but for the first)."""
        sentence = event.sentence
        shown = with_markers(sentence.text, sentence.citations)
        delta = f" {shown}" if self.count else shown
        sent = SentenceEvent(index=self.count, text=shown, sentence=sentence, citations=event.citations)
        self.text += delta
        self.count += 1
        return sent, delta

    def remainder(self, result: QAResult) -> str:
        """What the final answer adds to the text sent so far: all of it for an abstention, else nothing."""
        if result.answer.startswith(self.text):
            return result.answer[len(self.text):]
        log.error("the streamed sentences %r are not the start of the final answer %r", self.text, result.answer)
        return ""
