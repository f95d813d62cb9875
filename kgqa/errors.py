"""Expected failures shared across packages; each carries a one-line message fit for a user."""


class KgqaError(Exception):
    """Base of every expected kgqa failure."""


class InvalidQuestion(KgqaError, ValueError):
    """The question is empty, too long or otherwise unusable."""


class KnowledgeBaseMissing(KgqaError):
    """No knowledge base has been built in the data folder yet."""


class EmbedderMismatch(KgqaError):
    """The vector index was built by another embedder than the configured one; its vectors cannot be mixed."""


class Overloaded(KgqaError):
    """The model's request queue is full; the caller should retry later."""

    def __init__(self, message: str = "the model is busy; retry shortly", retry_after: int = 2):
        super().__init__(message)
        self.retry_after = retry_after


class LMServerError(KgqaError):
    """The LM server could not be reached, refused the request or answered something unusable."""

    def __init__(self, server: str, reason: str):
        super().__init__(f"LM server {server}: {reason}")
        self.server = server
        self.reason = reason  # without the server's address, for the service's clients


class LMServerUnavailable(LMServerError):
    """The LM server could not be reached, timed out, or answered 429/5xx on every attempt: down or
    starting, so worth trying again later (unlike a refusal or a malformed answer, which is its setup)."""


class Cancelled(KgqaError):
    """The work was given up: the client that asked for it went away (``kgqa.cancel``)."""
