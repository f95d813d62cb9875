"""Alias normalisation shared by the store and the entity linker: case, accents and punctuation folded."""

from __future__ import annotations

import unicodedata


def normalize_alias(text: str) -> str:
    """``"Montgomery, Alabama"`` and ``"montgomery alabama"`` fold to the same key; so do ``Leó`` and ``Leo``."""
    decomposed = unicodedata.normalize("NFKD", text)
    kept = []
    for char in decomposed:
        category = unicodedata.category(char)
        if category.startswith("M"):
            continue
        kept.append(" " if category[0] in "PSZC" else char)
    return " ".join("".join(kept).casefold().split())
