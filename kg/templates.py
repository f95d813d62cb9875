"""How value-bearing templates read as plain text.

``strip_code()`` drops every template, which empties infobox values such as
``{{Birth date|1879|3|14}}`` or ``{{hlist|a|b}}``. Here each known template maps
to the pieces a reader would see: literal strings and parameter wikicode that the
caller renders recursively (so links inside stay links). Unknown templates
(citations, maintenance tags, navigation boxes) read as nothing.
"""

from __future__ import annotations

from mwparserfromhell.nodes import Template
from mwparserfromhell.wikicode import Wikicode

Piece = str | Wikicode

DATE_TEMPLATES = {
    "birth date", "birth date and age", "death date", "death date and age", "start date",
    "end date", "start date and age", "end date and age", "film date", "dob", "date",
    "birth-date", "death-date", "bda", "dda",
}
YEAR_TEMPLATES = {"birth year and age", "death year and age", "birth year", "death year"}
LIST_TEMPLATES = {
    "hlist", "flatlist", "flat list", "plainlist", "plain list", "ubl", "ubil", "unbulleted list",
    "unbulleted indent list", "vunblist", "bulleted list", "bull list", "blist", "ordered list",
    "collapsible list", "enum", "br separated entries", "unordered list",
}
FIRST_PARAM_TEMPLATES = {
    "nowrap", "nobr", "small", "big", "larger", "smaller", "noitalic", "nobold", "center",
    "flag", "flagcountry", "flag country", "flagu", "abbr", "sic", "url", "marriage", "lang-en",
    "nowraplinks", "ill", "interlanguage link", "visible anchor", "nastaliq", "script", "em",
    "strong", "lang-ar", "lang-ber", "lang-fr", "lang-de", "lang-es", "lang-el", "lang-la",
    "lang-it", "lang-ru", "lang-he", "lang-grc", "lang-zh", "transl", "as of",
}
SECOND_PARAM_TEMPLATES = {"lang", "native name", "native phrase", "nihongo"}
LAST_PARAM_TEMPLATES = {"resize", "font", "font color", "color"}


def template_name(template: Template) -> str:
    """Lower-cased name with underscores folded, e.g. "Infobox U.S. state" -> "infobox u.s. state"."""
    return " ".join(str(template.name).replace("_", " ").split()).lower()


def positional(template: Template) -> list[Wikicode]:
    return [param.value for param in template.params if not param.showkey]


def _numbers(values: list[Wikicode]) -> list[int]:
    numbers = []
    for value in values:
        text = value.strip_code().strip()
        if not text.isdigit():
            break
        numbers.append(int(text))
    return numbers


def _iso_date(values: list[Wikicode]) -> str:
    parts = _numbers(values)[:3]
    if not parts:
        return values[0].strip_code().strip() if values else ""
    year, month, day = (parts + [0, 0])[:3]
    if month and day:
        return f"{year:04d}-{month:02d}-{day:02d}"
    return f"{year:04d}-{month:02d}" if month else f"{year:04d}"


def template_pieces(template: Template) -> list[Piece]:
    """What the template shows on the page, as pieces to render; [] when it shows no text."""
    name = template_name(template)
    params = positional(template)
    if name in DATE_TEMPLATES:
        return [_iso_date(params)]
    if name in YEAR_TEMPLATES:
        return [_iso_date(params[:1])]
    if name in LIST_TEMPLATES:
        pieces: list[Piece] = []
        for value in params:
            pieces.extend([value, "\n"])
        return pieces
    if name.startswith("formatnum:"):
        return [str(template.name).split(":", 1)[1].strip()]
    if name in ("convert", "cvt") and params:
        return [params[0], " ", params[1]] if len(params) > 1 else [params[0]]
    if name == "circa" and params:
        return ["c. ", params[0]]
    if name in SECOND_PARAM_TEMPLATES and len(params) >= 2:
        return [params[1]]
    if name in LAST_PARAM_TEMPLATES and params:
        return [params[-1]]
    if (name in FIRST_PARAM_TEMPLATES or name.startswith("lang-")) and params:
        return [params[0]]
    return []
