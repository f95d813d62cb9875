"""Stream ``<page>`` records out of a MediaWiki XML export in constant memory.

A full enwiki dump is 20+ GB, so the file is decompressed and parsed in chunks
with expat callbacks; only the page being read is held. Entity declarations
are refused outright (no DTD expansion, so no billion-laughs), bytes are checked
as strict UTF-8, and every failure surfaces as a one-line ``DumpError``.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from xml.parsers import expat

from kg.errors import DumpError

CHUNK_BYTES = 1 << 20
# Fields of <page> and its last <revision> that the pipeline keeps.
_PAGE_FIELDS = {("page", "title"), ("page", "ns"), ("page", "id"), ("revision", "id"),
                ("revision", "timestamp"), ("revision", "text"), ("siteinfo", "dbname")}


@dataclass(frozen=True)
class RawPage:
    """One page as the dump holds it; ``redirect`` is the target title for redirect pages."""

    ns: int
    page_id: int
    title: str
    redirect: str | None
    rev_id: int
    timestamp: str
    text: str


def open_dump(path: Path) -> BinaryIO:
    """Open a plain, bz2 (multistream included) or gzip dump, chosen by its magic bytes."""
    path = Path(path)
    if not path.exists():
        raise DumpError(f"dump not found: {path}")
    if not path.is_file():
        raise DumpError(f"dump is not a file: {path}")
    if path.stat().st_size == 0:
        raise DumpError(f"dump is empty: {path}")
    with path.open("rb") as head:
        magic = head.read(3)
    if magic == b"BZh":
        return bz2.open(path, "rb")  # reads concatenated (multistream) bz2 streams too
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return path.open("rb")


class _PageCollector:
    """expat callbacks that assemble RawPage records from element events."""

    def __init__(self) -> None:
        self.pages: list[RawPage] = []
        self.root: str | None = None
        self.stack: list[str] = []
        self.fields: dict[str, str] = {}
        self.buffer: list[str] | None = None
        self.redirect: str | None = None
        self.wiki = ""  # <siteinfo><dbname>, e.g. "enwiki"

    def start(self, name: str, attrs: dict[str, str]) -> None:
        if self.root is None:
            self.root = name
            if name != "mediawiki":
                raise DumpError(f"not a MediaWiki XML export (root element <{name}>)")
        parent = self.stack[-1] if self.stack else ""
        self.stack.append(name)
        if name == "page":
            self.fields, self.redirect = {}, None
        elif name == "redirect" and parent == "page":
            self.redirect = attrs.get("title", "")
        elif (parent, name) in _PAGE_FIELDS:
            self.buffer = []

    def text(self, data: str) -> None:
        if self.buffer is not None:
            self.buffer.append(data)

    def end(self, name: str) -> None:
        self.stack.pop()
        parent = self.stack[-1] if self.stack else ""
        if self.buffer is not None and (parent, name) == ("siteinfo", "dbname"):
            self.wiki = "".join(self.buffer).strip()
            self.buffer = None
        elif self.buffer is not None and (parent, name) in _PAGE_FIELDS:
            key = "rev_id" if (parent, name) == ("revision", "id") else name
            self.fields[key] = "".join(self.buffer)
            self.buffer = None
        elif name == "page":
            self.pages.append(self._page())

    def _page(self) -> RawPage:
        fields = self.fields
        try:
            return RawPage(
                ns=int(fields.get("ns", "0")),
                page_id=int(fields["id"]),
                title=fields["title"].strip(),
                redirect=self.redirect.strip() if self.redirect is not None else None,
                rev_id=int(fields.get("rev_id", "0")),
                timestamp=fields.get("timestamp", ""),
                text=fields.get("text", ""),
            )
        except (KeyError, ValueError) as exc:
            raise DumpError(f"malformed <page> record near title {fields.get('title', '?')!r}: {exc}") from None


def _refuse_entities(*_args) -> None:
    raise DumpError("XML entity declarations are refused (possible entity-expansion bomb)")


def iter_pages(path: Path, info: dict | None = None) -> Iterator[RawPage]:
    """Yield every page of the dump in file order; raises ``DumpError`` on bad input.

    ``info["wiki"]`` is set to the dump's ``<dbname>`` ("" when it has none) once the first page is read.
    """
    collector = _PageCollector()
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.StartElementHandler = collector.start
    parser.EndElementHandler = collector.end
    parser.CharacterDataHandler = collector.text
    parser.EntityDeclHandler = _refuse_entities
    parser.UnparsedEntityDeclHandler = _refuse_entities
    parser.ExternalEntityRefHandler = lambda *a: _refuse_entities()
    utf8 = codecs.getincrementaldecoder("utf-8")("strict")
    consumed = 0
    with open_dump(path) as stream:
        try:
            while chunk := stream.read(CHUNK_BYTES):
                if consumed == 0 and not chunk.lstrip()[:1] in (b"<", b"\xef"):
                    raise DumpError(f"not a MediaWiki XML dump: {path}")
                utf8.decode(chunk)
                parser.Parse(chunk, False)
                consumed += len(chunk)
                if info is not None:
                    info["wiki"] = collector.wiki
                yield from collector.pages
                collector.pages.clear()
            utf8.decode(b"", True)
            if consumed == 0:
                raise DumpError(f"dump is empty after decompression: {path}")
            parser.Parse(b"", True)
        except UnicodeDecodeError as exc:
            raise DumpError(f"invalid UTF-8 in dump at byte {consumed + exc.start}: {path}") from None
        except expat.ExpatError as exc:
            message = expat.errors.messages.get(exc.code, str(exc)) if hasattr(exc, "code") else str(exc)
            raise DumpError(f"malformed XML at line {exc.lineno}, column {exc.offset}: {message}") from None
        except EOFError:
            raise DumpError(f"compressed dump is truncated: {path}") from None
        except OSError as exc:
            raise DumpError(f"cannot decompress dump ({exc}): {path}") from None
    if info is not None:
        info["wiki"] = collector.wiki
    yield from collector.pages
    if collector.root is None:
        raise DumpError(f"not a MediaWiki XML dump: {path}")
