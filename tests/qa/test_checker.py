"""The claim checker's hard checks, on hand-written claims and a stand-in encoder (tests/qa/test_answer.py)."""

from kgqa.records import LinkedEntity, PassageHit
from qa.budget import Evidence
from qa.checker import invented_terms, nearness, read_claim
from qa.claims import evidence_sentences, frame_question
from tests.qa.test_answer import VERIFIER

ANDORRA = PassageHit(passage_id="9:1:0:0", page_id=9, title="Andorra", section="Health", score=0.1,
                     url="https://en.wikipedia.org/wiki/Andorra",
                     text="The main hospital, Meritxell, is in Escaldes-Engordany. It opened in 1996.")
SUBJECT = [LinkedEntity(entity_id=9, title="Andorra", mention="Andorra", alias="Andorra", url=ANDORRA.url)]


def _read(question: str, claim: str, passage: PassageHit = ANDORRA):
    frame = frame_question(question, SUBJECT)
    readings = VERIFIER.read(frame, evidence_sentences(Evidence(passages=[passage])))
    return frame, readings, read_claim(claim, frame, VERIFIER)


def test_a_name_or_number_the_evidence_lacks_is_invented():
    _, readings, claim = _read("Where is Andorra's main hospital?", "Andorra's main hospital is in Sant Julià.")
    assert invented_terms(claim, readings) == {"sant", "julià"}
    _, readings, claim = _read("When did Andorra's main hospital open?", "It opened in 1997.")
    assert invented_terms(claim, readings) == {"1997"}


def test_hyphenated_names_a_sentence_opening_capital_and_months_are_not_invented():
    _, readings, claim = _read("Where is Andorra's main hospital?",
                               "Located in Escaldes-Engordany, Andorra's main hospital opened in March 1996.")
    assert invented_terms(claim, readings) == set()


def test_the_answer_nearest_the_asked_relation_is_the_one_the_sentence_binds():
    turkey = PassageHit(passage_id="70:1:0:0", page_id=70, title="Turkey", section="", score=0.1,
                        url="https://en.wikipedia.org/wiki/Turkey",
                        text="Ankara is the capital of Turkey, while Istanbul is its largest city.")
    frame = frame_question("What is the capital of Turkey?",
                           [LinkedEntity(entity_id=70, title="Turkey", mention="Turkey", alias="Turkey", url=turkey.url)])
    [reading] = VERIFIER.read(frame, evidence_sentences(Evidence(passages=[turkey])))
    right = nearness(VERIFIER, frame, reading, read_claim("Turkey's capital is Ankara.", frame, VERIFIER))
    wrong = nearness(VERIFIER, frame, reading, read_claim("The capital of Turkey is Istanbul.", frame, VERIFIER))
    assert right[0] == 1.0 and wrong[0] == 0.0 and right[1] > 0 > wrong[1]


def test_where_the_subjects_own_article_was_retrieved_a_statement_elsewhere_cannot_back_a_claim():
    from qa.checker import ClaimChecker

    own = PassageHit(passage_id="5:1:0:0", page_id=5, title="Testland", section="", score=0.1,
                     url="https://en.wikipedia.org/wiki/Testland", text="Testland has a population of 2,450,000.")
    elsewhere = PassageHit(passage_id="6:1:0:0", page_id=6, title="Zembla", section="", score=0.1,
                           url="https://en.wikipedia.org/wiki/Zembla", text="Testland has a population of 48,213,977.")
    subject = [LinkedEntity(entity_id=5, title="Testland", mention="Testland", alias="Testland", url=own.url)]
    frame = frame_question("What is the population of Testland?", subject)
    checker = ClaimChecker(VERIFIER)
    claim = read_claim("Testland has 48,213,977 inhabitants.", frame, VERIFIER)
    both = VERIFIER.read(frame, evidence_sentences(Evidence(passages=[own, elsewhere])))
    assert checker.pairs(claim, frame, both)[0] == []
    only_elsewhere = VERIFIER.read(frame, evidence_sentences(Evidence(passages=[elsewhere])))
    [pair] = checker.pairs(claim, frame, only_elsewhere)[0]
    assert pair.reading.sentence.title == "Zembla"


def test_a_name_the_claim_answers_with_counts_however_near_a_question_word_it_means(monkeypatch):
    albania = [LinkedEntity(entity_id=3, title="Albania", mention="Albania", alias="Albania",
                            url="https://en.wikipedia.org/wiki/Albania")]
    frame = frame_question("What is the capital of Albania?", albania)
    monkeypatch.setattr(VERIFIER.words, "best_match", lambda word, words: (1.0, next(iter(words))))
    claim = read_claim("Tirana is the capital city of Albania.", frame, VERIFIER)
    assert claim.added == {"tirana"}  # "city" means what "capital" means; Tirana is an answer all the same
    assert claim.answer_terms == {"tirana"}
