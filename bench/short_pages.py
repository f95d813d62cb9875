"""A dump of short pages made from the sample's own wikitext: one real paragraph per page.

The sample's articles are long (about 26 passages each), so per-page costs hide
behind embedding there; a dump of short pages (one passage of about a hundred
tokens each, like most of Wikipedia's stubs) shows them. Each page is a real
paragraph of the sample's wikitext, links, references and templates included,
under a title of its own, with a category; paragraphs are reused round-robin
when more pages are asked for than the sample has paragraphs.

    python bench/short_pages.py OUT.xml.bz2 [--pages 10000]
"""

from __future__ import annotations

import argparse
import bz2
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kg.dump_reader import iter_pages  # noqa: E402

HEADER = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="en">\n'
          "<siteinfo><sitename>Wikipedia</sitename></siteinfo>\n")
_PROSE = re.compile(r"^(?:'''|[A-Z0-9\"(])")  # a paragraph line, not a template, table, list, heading or file
MIN_CHARS, MAX_CHARS = 350, 900  # about 60-160 words: one passage, the size of a stub's lead


def sample_paragraphs(dump: Path) -> list[tuple[str, str]]:
    """(article title, paragraph wikitext) for every prose paragraph of the sample's articles."""
    found = []
    for page in iter_pages(dump):
        if page.ns != 0 or page.redirect is not None:
            continue
        for line in page.text.splitlines():
            line = line.strip()
            if MIN_CHARS <= len(line) <= MAX_CHARS and _PROSE.match(line) and "[[" in line:
                found.append((page.title, line))
    return found


def short_pages(dump: Path, count: int) -> Iterator[str]:
    """``count`` <page> elements, each one paragraph of the sample under a new title."""
    paragraphs = sample_paragraphs(dump)
    if not paragraphs:
        raise ValueError(f"{dump} has no prose paragraphs to make pages from")
    for number in range(count):
        title, text = paragraphs[number % len(paragraphs)]
        page_id = 1_000_000 + number
        body = f"{text}\n\n[[Category:{title}]]\n"
        yield (f"<page><title>{escape(title)} (stub {number})</title><ns>0</ns><id>{page_id}</id>"
               f"<revision><id>{page_id}</id><timestamp>2024-01-01T00:00:00Z</timestamp>"
               f'<text xml:space="preserve">{escape(body)}</text></revision></page>\n')


def write_short_page_dump(dump: Path, out: Path, count: int) -> Path:
    with bz2.open(out, "wt", encoding="utf-8") as handle:
        handle.write(HEADER)
        for page in short_pages(dump, count):
            handle.write(page)
        handle.write("</mediawiki>\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--pages", type=int, default=10_000)
    args = parser.parse_args()
    from kgqa import assets
    from kgqa.settings import Settings

    write_short_page_dump(assets.sample_dump_path(Settings()), args.out, args.pages)
    print(f"wrote {args.pages} pages to {args.out}")


if __name__ == "__main__":
    main()
