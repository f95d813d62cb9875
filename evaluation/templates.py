"""Question templates per infobox predicate, and the checks that keep generated questions readable.

Only predicates whose question reads naturally and whose answer is a short name or
date get a template. Dropped after reading generated samples: ``field`` ("What field
did Autism work in?"), ``religion`` (values like "See: Abraham Lincoln and religion"),
``region`` (a philosopher's "region" is "Western philosophy"), ``leader_name1``/``leader_title1``
(numbered pairs), ``country`` (awards and ceremonies: "In which country is Academy Awards?"),
``admittancedate`` ("When was Alberta admitted to the Union?": provinces share the key),
and every number-valued key (population, area, GDP, coordinates), whose written forms
vary too much to score. Survey articles ("Economy of Angola") are not asked about, and
linked answers that name an article rather than a value ("List of Andorrans",
"Demography of Afghanistan" as a demonym) are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PLACE, PERSON, WORK = "place", "person", "work"


@dataclass(frozen=True)
class Template:
    text: str  # "{s}" is the subject
    family: str  # which kind of subject it fits
    keywords: tuple[str, ...]  # words a passage uses when it states this fact


TEMPLATES: dict[str, Template] = {
    "capital": Template("What is the capital of {s}?", PLACE, ("capital",)),
    "largestcity": Template("What is the largest city in {s}?", PLACE, ("largest city",)),
    "currency": Template("What is the currency of {s}?", PLACE, ("currency",)),
    "nationalanthem": Template("What is the national anthem of {s}?", PLACE, ("anthem",)),
    "officiallanguages": Template("What is the official language of {s}?", PLACE, ("official language",)),
    "officiallang": Template("What is the official language of {s}?", PLACE, ("official language",)),
    "demonym": Template("What are people from {s} called?", PLACE, ("demonym",)),
    "governor": Template("Who is the governor of {s}?", PLACE, ("governor",)),
    "nickname": Template("What is the nickname of {s}?", PLACE, ("nickname",)),
    "birthplace": Template("Where was {s} born?", PERSON, ("born",)),
    "deathplace": Template("Where did {s} die?", PERSON, ("died",)),
    "birthdate": Template("When was {s} born?", PERSON, ("born",)),
    "deathdate": Template("When did {s} die?", PERSON, ("died",)),
    "spouse": Template("Who was the spouse of {s}?", PERSON, ("married", "wife", "husband", "spouse")),
    "nationality": Template("What was the nationality of {s}?", PERSON, ("nationality",)),
    "almamater": Template("Where did {s} study?", PERSON, ("studied", "university", "college")),
    "birthname": Template("What was the birth name of {s}?", PERSON, ("born",)),
    "author": Template("Who wrote {s}?", WORK, ("written", "wrote", "author")),
    "writer": Template("Who wrote {s}?", WORK, ("written", "wrote", "writer")),
    "director": Template("Who directed {s}?", WORK, ("directed", "director")),
    "publisher": Template("Who published {s}?", WORK, ("published", "publisher")),
    "genre": Template("What genre is {s}?", WORK, ("genre",)),
    "language": Template("In what language is {s}?", WORK, ("language",)),
}

DATE_PREDICATES = frozenset({"birthdate", "deathdate"})
# Facts whose absence from a subject's article makes a fair unanswerable question.
# Not genre: a text says "a drama film" without the word "genre", so its absence cannot be checked.
ABSENCE_PREDICATES = frozenset({"capital", "largestcity", "currency", "nationalanthem", "spouse", "author",
                                "writer", "director", "publisher"})

# Answers that are placeholders rather than facts (Algeria's largest city is "capital").
_PLACEHOLDERS = {"capital", "see", "none", "n/a", "unknown", "various", "list", "yes", "no"}
_MARKUP = re.compile(r"[{}\[\]|<>=]|https?:|\.svg|\.png|\.jpg", re.IGNORECASE)
_DISAMBIGUATOR = re.compile(r"\s*\([^)]*\)\s*$")
_SURVEY = re.compile(r"^(list|lists|culture|demograph\w*|economy|history|geography|politics|adjectivals|outline)\b"
                     r".*\b(of|and|for)\b", re.IGNORECASE)
_ISO_DATE = re.compile(r"^(\d{3,4})-(\d{2})-(\d{2})$")
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]
_SUFFIXES = (" language", " languages", " people")


def canonical_predicate(predicate: str) -> str:
    """Fold the infobox key variants ("largest_city", "largestcity", "Largest city", "spouse2") together."""
    key = re.sub(r"[^a-z]", "", predicate.lower())
    if key.endswith("ies"):  # "largest_cities" is the same question as "largest_city"
        return key[:-3] + "y"
    return key


def subject_phrase(title: str) -> str:
    """How a question names its subject: the title without its disambiguator."""
    return _DISAMBIGUATOR.sub("", title).strip() or title


def is_survey_title(title: str) -> bool:
    """"Economy of Angola", "List of Andorrans": articles about a topic, not things a question can name."""
    return bool(_SURVEY.match(title))


def clean_answer(value: str, predicate: str = "") -> str | None:
    """A short, markup-free answer string, or None when the value cannot be scored fairly."""
    value = " ".join(value.split()).strip(" ,;:.\"'“”")
    if len(value) < 3 or len(value) > 60 or len(value.split()) > 8:
        return None
    if _MARKUP.search(value) or value.lower() in _PLACEHOLDERS or is_survey_title(value):
        return None
    if predicate in DATE_PREDICATES:
        return value if any(ch.isdigit() for ch in value) else None
    return None if value[0].isdigit() else value


def answer_variants(answer: str) -> list[str]:
    """Other forms a correct answer may take: written-out dates, no disambiguator, "Town" of "Town, State, U.S."."""
    iso = _ISO_DATE.match(answer)
    if iso:
        year, month, day = int(iso[1]), _MONTHS[int(iso[2]) - 1], int(iso[3])
        return [f"{day} {month} {year}", f"{month} {day}, {year}"]
    variants = []
    bare = _DISAMBIGUATOR.sub("", answer).strip()
    if bare and bare != answer:
        variants.append(bare)
    for suffix in _SUFFIXES:
        if bare.endswith(suffix) and len(bare) > len(suffix) + 2:
            variants.append(bare[: -len(suffix)])
    head = bare.split(",")[0].strip()
    if head and head != bare and len(head) > 2 and not head[0].isdigit():
        variants.append(head)
    return variants


def subject_family(canonical_predicates: set[str]) -> str | None:
    """Guess whether a subject is a place, a person or a work from the templates its facts fill."""
    votes: dict[str, int] = {}
    for predicate in canonical_predicates:
        template = TEMPLATES.get(predicate)
        if template:
            votes[template.family] = votes.get(template.family, 0) + 1
    return max(votes, key=votes.get) if votes else None
