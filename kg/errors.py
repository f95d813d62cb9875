"""Ingestion failures a user can act on; each message is one line."""

from __future__ import annotations

from kgqa.errors import KgqaError


class DumpError(KgqaError):
    """The dump cannot be read: missing, empty, not a MediaWiki export, corrupt or hostile."""


class IngestRunning(KgqaError):
    """Another ingest run holds the knowledge base's writer lock."""


class DatabaseUnreachable(KgqaError):
    """The configured database refused the connection: server down, wrong credentials or no such database."""
