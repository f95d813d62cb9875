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
