"""A stand-in LM that writes fixed sentences word by word and can be held mid-draft.

After the first word of its second sentence (the first is then complete, and the engine
can check it) it waits for the test to set ``go`` before writing on: anything the client
has read while ``finished`` is unset was sent before the draft ended.
"""

from __future__ import annotations

import threading


class HeldGenerator:
    model_name, backend, device, attention = "held stand-in", "stand-in", "cpu", "none"

    def __init__(self, sentences: list[str]):
        self.sentences = sentences
        self.go = threading.Event()
        self.finished = threading.Event()

    def warm_up(self) -> None:
        pass

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(self, messages, **knobs):
        words = [w for s in self.sentences for w in s.split()]
        hold_at = len(self.sentences[0].split()) + 1

        def pieces():
            for number, word in enumerate(words):
                if number == hold_at:
                    self.go.wait(timeout=30)
                yield word if number == 0 else f" {word}"
            self.finished.set()

        return pieces()
