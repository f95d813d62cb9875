"""Unit tests of the dump reader, wikitext cleaning, infobox values and passage splitting."""

from __future__ import annotations

import bz2
import gzip

import mwparserfromhell
import pytest

from kg.dump_reader import RawPage, iter_pages
from kg.errors import DumpError
from kg.infobox import infobox_facts, normalize_key
from kg.page_parser import is_person, parse_page, surname, title_without_disambiguator
from kg.passages import MAX_WORDS, MIN_KEPT_WORDS, section_passages
from kg.wikitext import parse_article
from kg.aliases import normalize_alias
from tests.helpers.kg_dumps import page_xml, write_dump

ARTICLE = """{{Infobox person
| name = Ada Example
| birth_date = {{Birth date|df=yes|1815|12|10}}
| known_for = {{hlist|[[Analytical Engine]]|First program}}
| awards = {{plainlist|
* [[Royal Medal]] (1850)
* Honorary thing
}}
| residence = {{nowrap|[[London]]}}
| height = {{small|1.6 m}}
| capital = [[Montgomery, Alabama|Montgomery]]<ref>{{cite web|title=Source}}</ref>
| image = Ada.jpg
}}
'''Ada Example''' (born 1815) was a [[mathematician]]<ref>Some reference text</ref> from [[London|the capital]].
She worked on the {{convert|3|km}} engine.<!-- hidden comment -->

{| class="wikitable"
| table cell text
|}

== Work ==
[[File:Engine.png|thumb|A caption that must go]]
She wrote notes on the [[Analytical Engine]].

=== Engine design ===
Her notes were long.

== References ==
{{reflist}}
[[Category:Mathematicians]]
[[de:Ada Example]]
"""


def test_reader_reads_plain_gzip_and_multistream_bz2(tmp_path):
    pages = [page_xml(1, "One", 10, "text one"), page_xml(2, "Two", 20, "", redirect="One"),
             page_xml(3, "Talk:One", 30, "talk", ns=1)]
    plain = write_dump(tmp_path / "d.xml", pages)
    data = plain.read_bytes()
    (tmp_path / "d.xml.gz").write_bytes(gzip.compress(data))
    half = len(data) // 2  # two concatenated bz2 streams, as in the multistream dumps
    (tmp_path / "d.xml.bz2").write_bytes(bz2.compress(data[:half]) + bz2.compress(data[half:]))
    for name in ("d.xml", "d.xml.gz", "d.xml.bz2"):
        read = list(iter_pages(tmp_path / name))
        assert [(p.page_id, p.title, p.ns, p.rev_id, p.redirect) for p in read] == [
            (1, "One", 0, 10, None), (2, "Two", 0, 20, "One"), (3, "Talk:One", 1, 30, None)]
        assert read[0].text == "text one" and read[0].timestamp.startswith("2020-01-")


def test_reader_refuses_entity_declarations(tmp_path):
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]>'
                    "<mediawiki><page><title>&b;</title></page></mediawiki>")
    with pytest.raises(DumpError, match="entity"):
        list(iter_pages(bomb))


def test_article_text_is_clean_and_section_aware():
    article = parse_article("Ada Example", ARTICLE)
    lead = article.sections[0].text
    assert "Ada Example (born 1815) was a mathematician from the capital." in " ".join(lead.split())
    assert "3 km" in lead
    for junk in ("Some reference text", "hidden comment", "table cell", "caption that must go", "{{", "[[", "<ref"):
        assert junk not in "".join(s.text for s in article.sections)
    assert [s.path for s in article.sections] == ["", "Work", "Work > Engine design"]  # References is dropped
    assert article.categories == ["Mathematicians"]
    assert article.bold_names == ["Ada Example"]
    assert {link.target for link in article.sections[0].links} == {"Mathematician", "London"}
    assert len(article.infoboxes) == 1 and not article.is_disambiguation


def test_infobox_values_keep_template_wrapped_text():
    infobox = mwparserfromhell.parse(ARTICLE).filter_templates(recursive=False)[0]
    facts = {(f.predicate, f.object_title, f.literal) for f in infobox_facts(infobox)}
    assert ("birth_date", None, "1815-12-10") in facts
    assert ("known_for", "Analytical Engine", "Analytical Engine") in facts
    assert ("known_for", None, "First program") in facts
    assert ("awards", "Royal Medal", "Royal Medal (1850)") in facts
    assert ("awards", None, "Honorary thing") in facts
    assert ("residence", "London", "London") in facts
    assert ("height", None, "1.6 m") in facts
    assert ("capital", "Montgomery, Alabama", "Montgomery") in facts  # the ref is gone, the link stays
    assert not any(f[0] == "image" for f in facts)
    assert normalize_key(" Birth-Date ") == "birth_date"


def test_disambiguation_and_aliases():
    dab = parse_article("Mercury", "'''Mercury''' may refer to:\n* [[Mercury (planet)]]\n{{disambiguation}}")
    assert dab.is_disambiguation
    assert parse_article("Austin (disambiguation)", "x").is_disambiguation
    assert title_without_disambiguator("Animalia (book)") == "Animalia"
    assert normalize_alias("Montgomery,  ALABAMA!") == normalize_alias("montgomery alabama") == "montgomery alabama"
    assert normalize_alias("Leó Szilárd") == "leo szilard"


def raw_page(title: str, text: str) -> RawPage:
    return RawPage(ns=0, page_id=1, title=title, redirect=None, rev_id=1, timestamp="", text=text)


def test_a_person_page_gets_its_surname_as_the_last_alias():
    by_infobox = parse_page(raw_page("Arthur Schopenhauer", "{{Infobox philosopher\n| death_date = 21 September 1860\n}}\n"
                                     "'''Arthur Schopenhauer''' was a German philosopher."))
    assert by_infobox.aliases == [("Arthur Schopenhauer", "title"), ("Arthur Schopenhauer", "bold"),
                                  ("Schopenhauer", "surname")]
    by_category = parse_page(raw_page("Albert Sidney Johnston (general)",
                                      "'''Albert Sidney Johnston''' was a general.\n[[Category:1803 births]]"))
    assert by_category.aliases[-1] == ("Johnston", "surname")


def test_a_page_about_no_person_or_with_a_one_word_title_gets_no_surname():
    novel = parse_page(raw_page("Animal Farm", "{{Infobox book\n| release_date = 17 August 1945\n}}\n"
                                "'''''Animal Farm''''' is a novella by [[George Orwell]].\n[[Category:1945 novels]]"))
    assert "surname" not in [source for _, source in novel.aliases]
    philosopher = parse_page(raw_page("Aristotle", "'''Aristotle''' was a philosopher.\n[[Category:384 BC births]]"))
    assert "surname" not in [source for _, source in philosopher.aliases]


def test_personhood_is_read_from_life_dates_and_year_of_birth_or_death_categories():
    assert is_person(["name", "birth_date"], []) and is_person([], ["1788 births"])
    assert is_person(["death_date"], []) and is_person([], ["322 BC deaths"])
    assert not is_person(["release_date", "birth_place"], ["1945 novels", "Births in fiction", "People from Ulm"])


@pytest.mark.parametrize("title, expected", [
    ("Arthur Schopenhauer", "Schopenhauer"), ("Albert Sidney Johnston", "Johnston"), ("Abraham Lincoln", "Lincoln"),
    ("Martin Luther King Jr.", "King"), ("Sammy Davis, Jr.", "Davis"), ("John D. Rockefeller III", "Rockefeller"),
    ("Seán O'Casey", "O'Casey"), ("Catherine Zeta-Jones", "Zeta-Jones"), ("Ayn Rand (writer)", "Rand"),
    ("Aristotle", None), ("Prince (musician)", None), ("Louis XIV", None), ("Elizabeth II", None),
    ("Henry VIII of England", None), ("Alexander the Great", None), ("Pope Pius XII", None), ("Malcolm X", None),
])
def test_a_surname_is_the_last_word_of_a_name_without_suffix_or_regnal_number(title, expected):
    assert surname(title) == expected


LIST_PAGE = """'''Aberdeen''' may refer to:
* [[Aberdeen College]], formerly one of the largest further education colleges in Scotland
* [[Aberdeen Hall]], a university-preparatory school in [[Kelowna]], British Columbia
The changed commandments are:
<ol><li>No animal shall sleep in a bed '''with sheets.'''</li>
<li>No animal shall drink alcohol '''to excess.'''</li></ol>
A soft-wrapped
line of prose stays one line.

; Term : its definition on the same line
"""


def test_list_items_and_paragraphs_start_lines_of_their_own():
    article = parse_article("Aberdeen (disambiguation)", LIST_PAGE)
    [passage] = section_passages(article.sections[0], 0)
    assert passage.text.split("\n") == [
        "Aberdeen may refer to:",
        "Aberdeen College, formerly one of the largest further education colleges in Scotland",
        "Aberdeen Hall, a university-preparatory school in Kelowna, British Columbia",
        "The changed commandments are:",
        "No animal shall sleep in a bed with sheets.",
        "No animal shall drink alcohol to excess.",
        "A soft-wrapped line of prose stays one line.",
        "Term its definition on the same line",  # a definition on its term's line stays there
    ]
    assert {"Aberdeen College", "Aberdeen Hall", "Kelowna"} <= set(passage.links)


def test_line_breaks_move_no_passage_boundary():
    """Passages are cut by word counts, and a line break is no word: ids stay as they were."""
    items = "\n".join(f"* item {i} " + "word " * 30 for i in range(40))
    article = parse_article("Long list", "Intro sentence here.\n" + items)
    drafts = section_passages(article.sections[0], 0)
    flat = article.sections[0].text.replace("\ue000", "")
    flat_drafts = section_passages(type(article.sections[0])(0, "", flat, []), 0)
    assert len(drafts) == len(flat_drafts) > 1
    for draft, flat_draft in zip(drafts, flat_drafts):
        assert draft.text.split() == flat_draft.text.split()
        assert "\n" in draft.text and "\n" not in flat_draft.text


def test_real_einstein_page(sample_dump):
    raw = next(p for p in iter_pages(sample_dump) if p.title == "Albert Einstein")
    page = parse_page(raw)
    facts = {}
    for fact in page.facts:
        facts.setdefault(fact.predicate, []).append(fact)
    assert facts["birth_date"][0].literal == "1879-03-14"
    assert facts["death_date"][0].literal == "1955-04-18"
    known_for = [f.object_title or f.literal for f in facts["known_for"]]
    assert "Photoelectric effect" in known_for and all(known_for) and len(known_for) >= 8
    assert all(f.literal.strip() for f in page.facts)
    ids = [(d.section_ordinal, d.ordinal) for d in page.passages]
    assert [o for _, o in ids] == list(range(len(ids)))  # ordinals are positions in the page
    assert all(MIN_KEPT_WORDS <= len(d.text.split()) <= MAX_WORDS + 60 for d in page.passages)
    lengths = sorted(len(d.text.split()) for d in page.passages)
    assert 100 <= lengths[len(lengths) // 2] <= 250  # the typical passage is in the target range
    assert any(d.section.startswith("Biography > ") for d in page.passages)
    assert not any("{{" in d.text or "[[" in d.text or "<ref" in d.text for d in page.passages)
    assert parse_page(raw).passages == page.passages  # deterministic, so ids are stable
