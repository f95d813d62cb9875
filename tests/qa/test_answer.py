"""Answer composition on hand-written model outputs: what is shown, cited, dropped or abstained."""

from qa.answer import AnswerComposer, topic_coverage, evidence_items
from qa.attribution import Attributor
from kgqa.records import FactHit, LinkedEntity, PassageHit
from qa.budget import Evidence

CAPITAL = FactHit(triple_id=9, subject="Alabama", predicate="capital", object="Montgomery, Alabama",
                  object_is_entity=True, page_id=303, rev_id=1, field="capital", url="https://en.wikipedia.org/wiki/Alabama",
                  score=1.7)
PASSAGE = PassageHit(passage_id="303:1:0:0", page_id=303, title="Alabama", section="", score=0.03,
                     url="https://en.wikipedia.org/wiki/Alabama",
                     text="Alabama is a state in the Southeastern United States. Birmingham is its most populous city.")
SPORTS = PassageHit(passage_id="8:1:4:0", page_id=8, title="Algeria", section="Culture > Sports", score=0.03,
                    url="https://en.wikipedia.org/wiki/Algeria",
                    text="Algeria has qualified for the FIFA World Cup four times, most recently in 2014.")
ALABAMA = [LinkedEntity(entity_id=303, title="Alabama", mention="Alabama", alias="Alabama", url=CAPITAL.url)]
composer = AnswerComposer(Attributor())


def test_direct_fact_leads_with_its_citation_and_contradictions_are_dropped():
    evidence = Evidence(passages=[PASSAGE], facts=[CAPITAL])
    result = composer.compose("What is the capital of Alabama?",
                              "The capital of Alabama is Birmingham. Birmingham is the most populous city.",
                              evidence, ALABAMA)
    assert not result.abstained
    assert result.answer.startswith("The capital of Alabama is Montgomery, Alabama [F1].")
    assert "The capital of Alabama is Birmingham." in result.dropped
    assert {c.id for c in result.citations} == {"F1", "1"}
    assert result.citations[0].kind == "fact" and result.citations[0].triple_id == 9


def test_unsupported_answer_without_a_fact_abstains_with_closest_sources():
    evidence = Evidence(passages=[SPORTS])
    result = composer.compose("Who won the 2030 FIFA World Cup?", "Algeria won the 2030 FIFA World Cup.", evidence, [])
    assert result.abstained and result.answer.startswith("The knowledge base does not say")
    assert [c.id for c in result.citations] == ["1"] and result.citations[0].kind == "passage"
    assert result.dropped == [] or result.dropped == ["Algeria won the 2030 FIFA World Cup."]


def test_a_refusal_abstains_and_question_numbers_must_be_in_evidence():
    evidence = Evidence(passages=[PASSAGE])
    result = composer.compose("Who is the mayor of Alabama?", "I don't know.", evidence, ALABAMA)
    assert result.abstained and "no answer" in result.abstain_reason
    items = evidence_items(Evidence(passages=[SPORTS]))
    assert topic_coverage("Who won the 2030 FIFA World Cup?", items) == 0.0
    assert topic_coverage("Who won the 2014 FIFA World Cup?", items) == 1.0


def test_a_year_the_evidence_lacks_outranks_todays_fact():
    evidence = Evidence(passages=[PASSAGE], facts=[CAPITAL])
    result = composer.compose("What will the capital of Alabama be in 2031?",
                              "The capital of Alabama is Montgomery.", evidence, ALABAMA)
    assert result.abstained and "numbers" in result.abstain_reason
    assert not any(c.kind == "fact" for c in result.citations)


def test_evidence_silent_on_the_asked_relation_abstains():
    author = CAPITAL.model_copy(update={"subject": "Animalia", "predicate": "author", "object": "Graeme Base"})
    book = PASSAGE.model_copy(update={"title": "Animalia (book)", "text": "Animalia is a picture book by Graeme Base."})
    evidence = Evidence(passages=[book], facts=[author])
    result = composer.compose("Who directed Animalia?", "Graeme Base [F1].", evidence, [])
    assert result.abstained and "relation" in result.abstain_reason
    answered = composer.compose("Who wrote Animalia?", "Graeme Base wrote Animalia [F1].", evidence, [])
    assert not answered.abstained and "Graeme Base" in answered.answer
