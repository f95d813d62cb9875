"""The distractor corpus of ``bench/retrieval_heldout.py``: the sample KB's passages plus ~100k real texts.

The sample knowledge base holds 104 articles (2.7k passages); on it retrieval is
saturated (article recall@5 0.99), so no fusion or encoder change shows. Here its
passages are mixed with passages of two real reference works written by people who
never saw this code, shipped by Debian (``apt-get install wordnet-base dict-foldoc``):

- WordNet 3.0 (``/usr/share/wordnet/data.noun``): every noun synset, 82k, as
  "lemma, lemma: gloss; examples". It covers the sample's own subjects (Alabama,
  Aristotle, anarchism, the Academy Awards, albedo ...), so it is a hard distractor for
  questions that name their subject: a short text on exactly that topic.
- FOLDOC (``/usr/share/dictd/foldoc.dict.dz``): the 15k entries of the Free On-line
  Dictionary of Computing, each cut into passages of at most ``FOLDOC_WORDS`` words.

A distractor never counts as a hit: its title for scoring is its source and id
("wordnet 08512259"), while what is embedded and indexed is its headword and text, as
a knowledge-base passage gets its article title and section. Vectors are cached per
encoder under ``cache_dir`` (keyed by the corpus and model fingerprints).
"""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WORDNET_NOUNS = Path("/usr/share/wordnet/data.noun")
FOLDOC = Path("/usr/share/dictd/foldoc.dict.dz")
FOLDOC_INDEX = Path("/usr/share/dictd/foldoc.index")
FOLDOC_WORDS = 120
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@dataclass(frozen=True)
class Doc:
    """One passage: ``key`` ranks it, ``label`` scores it (a KB article title, or a distractor's source id)."""

    key: str
    label: str
    heading: str  # what its text is introduced by (title, or title > section), as the KB embeds it
    text: str


def sample_passages(settings) -> list[Doc]:
    """Every passage of the knowledge base in ``settings.data_dir``, scored by its article title."""
    from sqlalchemy import select

    from kg.store import Passage, open_knowledge_base, session_factory

    sessions = session_factory(open_knowledge_base(settings, require_passages=True))
    with sessions() as session:
        rows = session.execute(select(Passage.id, Passage.title, Passage.section, Passage.text)
                               .order_by(Passage.page_id, Passage.ordinal)).all()
    return [Doc(pid, title, " > ".join(p for p in (title, section or "") if p), text) for pid, title, section, text in rows]


def wordnet_nouns(path: Path = WORDNET_NOUNS) -> list[Doc]:
    """One passage per noun synset: its lemmas as heading, its gloss (definition and examples) as text."""
    _require(path, "wordnet-base")
    docs = []
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if line.startswith("  "):  # the licence header
                continue
            fields, _, gloss = line.partition(" | ")
            parts = fields.split()
            offset, count = parts[0], int(parts[3], 16)
            lemmas = [re.sub(r"\(.*\)$", "", parts[4 + 2 * i]).replace("_", " ") for i in range(count)]
            docs.append(Doc(f"wn:{offset}", f"wordnet {offset}", ", ".join(lemmas), gloss.strip()))
    return docs


def foldoc_entries(path: Path = FOLDOC, index: Path = FOLDOC_INDEX, words: int = FOLDOC_WORDS) -> list[Doc]:
    """FOLDOC's entries (headword and body), each cut into passages of at most ``words`` words."""
    _require(path, "dict-foldoc")
    body = gzip.open(path, "rb").read()
    seen: set[tuple[int, int]] = set()
    docs = []
    for line in index.read_text(encoding="utf-8", errors="replace").splitlines():
        head, start, length = line.split("\t")
        span = (_b64(start), _b64(length))
        if head.startswith("00-database") or span in seen:  # aliases point at the same entry
            continue
        seen.add(span)
        entry = body[span[0]:span[0] + span[1]].decode("utf-8", errors="replace")
        title, _, text = entry.partition("\n")
        tokens = re.sub(r"[{}]", "", text).split()
        for part, at in enumerate(range(0, len(tokens), words)):
            docs.append(Doc(f"foldoc:{span[0]}:{part}", f"foldoc {span[0]}:{part}", title.strip(),
                            " ".join(tokens[at:at + words])))
    return docs


def build_corpus(settings, *, distractors: int | None = None) -> list[Doc]:
    """The sample's passages, then WordNet's and FOLDOC's, interleaved; ``distractors`` caps how many join."""
    extra = wordnet_nouns() + foldoc_entries()
    order = np.random.default_rng(0).permutation(len(extra))  # a cap keeps both sources in proportion
    if distractors is not None:
        order = np.sort(order[:distractors])
    return sample_passages(settings) + [extra[i] for i in order]


def corpus_fingerprint(docs: list[Doc]) -> str:
    digest = hashlib.sha256()
    for doc in docs:
        digest.update(f"{doc.key}\x1f{doc.heading}\x1f{doc.text}\x1e".encode("utf-8"))
    return digest.hexdigest()[:12]


def embed_corpus(embedder, docs: list[Doc], cache_dir: Path, name: str, *, chunk: int = 4096,
                 progress: bool = True) -> np.ndarray:
    """(len(docs), dim) vectors of ``document_text(heading, text)``, computed once and cached as .npy."""
    from kgqa.progress import progress_bar
    from models.embedding.embedder import document_text

    cache = cache_dir / f"{name}-{embedder.identity.fingerprint[:12]}-{corpus_fingerprint(docs)}.npy"
    if cache.is_file():
        return np.load(cache, mmap_mode="r")
    texts = [document_text(doc.heading, "", doc.text) for doc in docs]
    parts = []
    for at in progress_bar(range(0, len(texts), chunk), desc=f"embed {name}", unit="chunk", enabled=progress):
        parts.append(embedder.encode_documents(texts[at:at + chunk]))
    vectors = np.concatenate(parts) if parts else np.zeros((0, embedder.dim), np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


def _b64(value: str) -> int:
    number = 0
    for char in value:
        number = number * 64 + _B64.index(char)
    return number


def _require(path: Path, package: str) -> None:
    if not path.is_file():
        raise SystemExit(f"{path} is missing: install the distractor texts with `apt-get install {package}`")
