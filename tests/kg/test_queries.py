"""kg.queries.resolve_entity on the tiny store: a person's surname resolves last, and only when one person has it."""

from __future__ import annotations

import dataclasses

import pytest

from kg.infobox import InfoboxFact
from kg.queries import resolve_entity
from tests.helpers.tiny_kb import ALABAMA, EINSTEIN, ORWELL, open_store, tiny_settings, write_tiny_kb

BORN = InfoboxFact("birth_date", "birth_date", None, "1903")
ALBERT = dataclasses.replace(EINSTEIN, facts=[BORN], aliases=[*EINSTEIN.aliases, ("Einstein", "surname")])
ELSA = dataclasses.replace(EINSTEIN, page_id=737, title="Elsa Einstein", facts=[BORN],
                           aliases=[("Elsa Einstein", "title"), ("Einstein", "surname")])
ORWELL_THE_PERSON = dataclasses.replace(ORWELL, aliases=[*ORWELL.aliases, ("Orwell", "surname")])
ORWELL_THE_TOWN = dataclasses.replace(ALABAMA, page_id=404, title="Orwell, Vermont",
                                      aliases=[("Orwell, Vermont", "title"), ("Orwell", "bold")])


@pytest.fixture
def sessions(tmp_path):
    factory = open_store(tiny_settings(tmp_path / "data"))
    yield factory
    factory.kw["bind"].dispose()


def resolved(sessions, name: str) -> str | None:
    with sessions() as session:
        entity = resolve_entity(session, name)
        return entity.title if entity else None


def test_a_surname_one_person_has_resolves_to_them(sessions):
    write_tiny_kb(sessions, pages=[ALBERT, ORWELL_THE_PERSON], redirects=())
    assert resolved(sessions, "einstein") == "Albert Einstein"


def test_a_surname_two_people_share_resolves_to_neither(sessions):
    write_tiny_kb(sessions, pages=[ALBERT, ELSA], redirects=())
    assert resolved(sessions, "Einstein") is None
    assert resolved(sessions, "Elsa Einstein") == "Elsa Einstein"


def test_any_other_alias_of_the_name_wins_over_a_surname(sessions):
    write_tiny_kb(sessions, pages=[ORWELL_THE_PERSON, ORWELL_THE_TOWN], redirects=())
    assert resolved(sessions, "orwell") == "Orwell, Vermont"
