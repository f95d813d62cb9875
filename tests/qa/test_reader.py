"""The reader: which sentences are candidates, what it reads of them, and the fitted model it ships with."""

import dataclasses
import json

import numpy as np
import pytest

from kgqa.records import LinkedEntity, PassageHit
from qa.budget import Evidence
from qa.claims import ClaimVerifier, evidence_sentences, frame_question
from qa.reader import FEATURES, MODEL_PATH, AnswerReader, ReaderModel, ReaderModelError, candidates, describe
from qa.tuning import Thresholds
from tests.qa.test_answer import fake_encode

URL = "https://en.wikipedia.org/wiki/Angola"
ANGOLA = [LinkedEntity(entity_id=5, title="Angola", mention="Angola", alias="Angola", url=URL)]
HISTORY = PassageHit(passage_id="5:1:2:0", page_id=5, title="Angola", section="History", score=0.5, url=URL,
                     text="Portugal ruled Angola for 400 years. Angola gained independence in 1975. "
                          "It is rich in oil.")
NEIGHBOUR = PassageHit(passage_id="9:1:0:0", page_id=9, title="Namibia", section="", score=0.4,
                       url="https://en.wikipedia.org/wiki/Namibia",
                       text="Namibia gained independence from South Africa in 1990.")
verifier = ClaimVerifier(fake_encode, Thresholds(relation_match=0.5, relation_share=0.5, question_similarity=0.5))


def read(question, entities, passages):
    frame = frame_question(question, entities)
    return frame, verifier.read(frame, evidence_sentences(Evidence(passages=passages)))


def test_candidates_are_sentences_about_the_subject_holding_the_kind_of_answer_asked_for():
    frame, readings = read("When did Angola gain independence?", ANGOLA, [HISTORY, NEIGHBOUR])
    chosen = [r.sentence.text for r in candidates(verifier, frame, readings, 8)]
    # Namibia's sentence is about another entity; "It is rich in oil." holds no year
    assert set(chosen) == {"Angola gained independence in 1975.", "Portugal ruled Angola for 400 years."}
    assert candidates(verifier, frame, readings, 1)[0].sentence.text == "Angola gained independence in 1975."


def test_a_count_spelled_out_answers_how_many():
    lectures = PassageHit(passage_id="5:1:3:0", page_id=5, title="Angola", section="Education", score=0.5, url=URL,
                          text="Only five students came to the lectures in Angola. Angola has a university.")
    frame, readings = read("How many students came to the lectures in Angola?", ANGOLA, [lectures])
    chosen = [r.sentence.text for r in candidates(verifier, frame, readings, 8)]
    assert chosen == ["Only five students came to the lectures in Angola."]


def test_the_features_read_the_draft_and_compare_each_candidate_with_the_best():
    frame, readings = read("When did Angola gain independence?", ANGOLA, [HISTORY])
    chosen = candidates(verifier, frame, readings, 8)
    matrix = describe(verifier, frame, readings, chosen, ["Angola became independent in 1975 [1]."])
    assert matrix.shape == (len(chosen), 2 * len(FEATURES))
    agreement = FEATURES.index("draft_agreement")
    by_text = {r.sentence.text: row for r, row in zip(chosen, matrix)}
    # the draft adds "became", "independent" and "1975"; the sentence holds "1975"
    assert by_text["Angola gained independence in 1975."][agreement] == pytest.approx(1 / 3)
    assert by_text["Portugal ruled Angola for 400 years."][agreement] == 0.0
    relative = matrix[:, len(FEATURES):]
    assert np.all(relative <= 0) and np.all(relative.max(axis=0) == 0)
    position = FEATURES.index("sentence_position")
    assert by_text["Portugal ruled Angola for 400 years."][position] == 1.0
    assert by_text["Angola gained independence in 1975."][position] == 0.5


def test_similarity_is_also_read_with_the_title_before_the_sentence_and_without_the_subject():
    frame, readings = read("When did Angola gain independence?", ANGOLA, [HISTORY])
    chosen = candidates(verifier, frame, readings, 8)
    matrix = describe(verifier, frame, readings, chosen, [])
    column = {name: FEATURES.index(name) for name in ("similarity_with_title", "similarity_without_subject")}
    for reading, row in zip(chosen, matrix):
        titled, = verifier.similarities(frame.text, [f"Angola: {reading.sentence.text}"])
        assert row[column["similarity_with_title"]] == pytest.approx(titled)
        # "Angola" is out of both: "When did  gain independence?" against the sentence without it
        unsubjected, = fake_encode([reading.sentence.text.replace("Angola", "")]) @ fake_encode(
            ["When did gain independence?"]).T
        assert row[column["similarity_without_subject"]] == pytest.approx(float(unsubjected[0]), abs=1e-6)
    # nothing linked and no name in the question, or nothing asked beyond the subject: the plain similarity
    for question, entities in (("When did it gain independence?", []), ("What is Angola?", ANGOLA)):
        frame, readings = read(question, entities, [HISTORY])
        chosen = candidates(verifier, frame, readings, 8)
        matrix = describe(verifier, frame, readings, chosen, [])
        assert chosen and np.allclose(matrix[:, column["similarity_without_subject"]],
                                      [r.question_similarity for r in chosen])


def test_the_noun_that_names_the_kind_asked_for_is_not_a_relation():
    frame = frame_question("In what year did Angola gain independence?", ANGOLA)
    assert frame.answer_type == "date" and frame.relation_words == ("gain", "independence")
    frame = frame_question("Which city is the capital of Angola?", ANGOLA)
    assert frame.answer_type == "place" and frame.relation_words == ("capital",)
    # a noun elsewhere in the question is a relation like any other
    assert frame_question("What is the population of Angola?", ANGOLA).relation_words == ("population",)


def test_a_sentence_is_read_for_the_numbers_the_question_names():
    question = "Who won the election in 1992?"
    elections = PassageHit(passage_id="5:1:3:0", page_id=5, title="Angola", section="Politics", score=0.5, url=URL,
                           text="In 1992 José Eduardo dos Santos won the election in Angola. "
                                "In 2008 the MPLA won the election in Angola.")
    frame, readings = read(question, ANGOLA, [elections])
    chosen = candidates(verifier, frame, readings, 8)
    held = FEATURES.index("question_numbers")
    by_text = {r.sentence.text: row[held] for r, row in zip(chosen, describe(verifier, frame, readings, chosen, []))}
    assert by_text == {"In 1992 José Eduardo dos Santos won the election in Angola.": 1.0,
                       "In 2008 the MPLA won the election in Angola.": 0.0}
    # a question that names no number leaves every sentence at 1.0
    frame, readings = read("Who won the election in Angola?", ANGOLA, [elections])
    chosen = candidates(verifier, frame, readings, 8)
    assert set(describe(verifier, frame, readings, chosen, [])[:, held]) == {1.0}


def test_the_reader_gives_its_best_candidate_and_its_probability():
    weights = [0.0] * (2 * len(FEATURES))
    weights[FEATURES.index("draft_agreement")] = 10.0
    reader = AnswerReader(ReaderModel(weights=tuple(weights), intercept=-2.0, threshold=0.5, candidates=4))
    frame, readings = read("When did Angola gain independence?", ANGOLA, [HISTORY])
    choice = reader.choose(verifier, frame, readings, ["It was 1975."])
    assert choice.reading.sentence.text == "Angola gained independence in 1975."
    assert choice.probability == pytest.approx(1 / (1 + np.exp(-8.0)))  # agreement 1: 10 - 2
    assert reader.choose(verifier, *read("When did Angola gain independence?", ANGOLA, [NEIGHBOUR]), []) is None


def weights_on(feature: str, weight: float) -> tuple[float, ...]:
    weights = [0.0] * (2 * len(FEATURES))
    weights[FEATURES.index(feature)] = weight
    return tuple(weights)


def test_a_candidate_is_held_as_surely_as_the_less_sure_of_the_two_models():
    model = ReaderModel(weights=weights_on("similarity", 10.0), intercept=-2.0, threshold=0.5, candidates=4,
                        listwise_weights=weights_on("similarity", 5.0), null_utility=3.0)
    row = np.zeros(2 * len(FEATURES))
    row[FEATURES.index("similarity")] = 1.0
    sure = 1 / (1 + np.exp(-8.0))
    # alone, the candidate beats "none of them" (utility 5 against 3)
    assert model.probabilities(row[None, :]) == pytest.approx([np.exp(5) / (np.exp(3) + np.exp(5))])
    # beside a twin, the pointwise model is as sure of each, the listwise one splits between them
    twins = model.probabilities(np.vstack([row, row]))
    assert twins == pytest.approx([np.exp(5) / (np.exp(3) + 2 * np.exp(5))] * 2) and twins.max() < 0.5 < sure
    # a weak candidate: "none of them" wins the listwise model
    assert model.probabilities(np.zeros((1, 2 * len(FEATURES)))) == pytest.approx([1 / (np.exp(3) + 1)])
    # a model fitted without the listwise part reads the pointwise probability alone
    pointwise = ReaderModel(weights=model.weights, intercept=-2.0, threshold=0.5, candidates=4)
    assert pointwise.probabilities(np.vstack([row, row])) == pytest.approx([sure, sure])


def test_a_model_saved_is_the_model_loaded_and_a_model_of_other_features_is_refused(tmp_path):
    model = ReaderModel(weights=tuple(float(i) for i in range(2 * len(FEATURES))), intercept=-1.5, threshold=0.7,
                        candidates=8, provenance={"fitted_on": "dev.jsonl"},
                        listwise_weights=tuple(float(-i) for i in range(2 * len(FEATURES))), null_utility=2.5)
    model.save(tmp_path / "reader.json")
    assert ReaderModel.load(tmp_path / "reader.json") == model
    record = json.loads((tmp_path / "reader.json").read_text())
    # a model fitted before the listwise part existed is read as the pointwise model it is
    (tmp_path / "pointwise.json").write_text(json.dumps(
        {k: v for k, v in record.items() if k not in ("listwise_weights", "null_utility")}))
    pointwise = ReaderModel.load(tmp_path / "pointwise.json")
    assert pointwise.listwise_weights == () and pointwise.weights == model.weights
    (tmp_path / "short.json").write_text(json.dumps({**record, "listwise_weights": record["listwise_weights"][:-1]}))
    record["features"] = record["features"][:-1]
    (tmp_path / "old.json").write_text(json.dumps(record))
    for refused in ("old.json", "short.json"):
        with pytest.raises(ReaderModelError, match="fit-reader"):
            ReaderModel.load(tmp_path / refused)
    with pytest.raises(ReaderModelError, match="cannot read"):
        ReaderModel.load(tmp_path / "missing.json")


def test_the_shipped_model_was_fitted_on_dev_and_records_what_it_measured_there():
    model = ReaderModel.load(MODEL_PATH)
    assert model.provenance["fitted_on"].endswith("sample/dev.jsonl")
    figures = model.provenance["dev_out_of_fold"]
    assert figures["wrong_cited"] <= 0.03 and figures["abstention_unanswerable"] >= 0.97
    assert 0.0 < model.threshold < 1.0 and model.candidates >= 1
    assert len(model.listwise_weights) == len(model.weights)  # the shipped model reads both


@pytest.mark.slow
def test_the_engine_answers_with_the_reader_model_its_settings_name(sample_kb, tmp_path):
    from qa.engine import QAEngine

    class Idle:  # no LM is needed to load the reader
        def warm_up(self):
            pass

    stricter = ReaderModel.load()
    path = tmp_path / "reader.json"
    dataclasses.replace(stricter, threshold=0.99, provenance={"fitted_on": "a test"}).save(path)
    engine = QAEngine(sample_kb.with_overrides(reader_model=str(path)), generator=Idle())
    engine.warm_up()
    assert engine.composer.reader.model.threshold == 0.99
    missing = QAEngine(sample_kb.with_overrides(reader_model=str(tmp_path / "missing.json")), generator=Idle())
    with pytest.raises(ReaderModelError, match="missing.json"):
        missing.warm_up()
