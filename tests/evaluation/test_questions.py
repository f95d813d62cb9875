"""The question-set loader: multi-hop fields load, are checked, and leave single-hop sets as they were."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from evaluation.questions import EvalQuestion, QuestionSetError, load_questions, save_questions

HOP_ALGERIA = {"title": "Algeria", "passage_id": "358:1:26:36",
               "evidence": "Modern Standard Arabic is the official language."}
HOP_AFRO = {"title": "Afroasiatic languages", "passage_id": "599:1:0:0",
            "evidence": "The most widely spoken Afroasiatic language is Arabic."}
BRIDGE = {"id": "mh-1", "question": "Which language family does the official language of Algeria belong to?",
          "hop_kind": "bridge", "bridge": "Arabic", "hops": [HOP_ALGERIA, HOP_AFRO], "answer": "Afroasiatic",
          "gold_titles": ["Algeria", "Afroasiatic languages"], "gold_passage_ids": ["358:1:26:36", "599:1:0:0"]}
MISSING = {"id": "mh-2", "question": "When was the author of Animal Farm born?", "hop_kind": "bridge",
           "bridge": "George Orwell", "unanswerable": True, "note": "absent-entity: no George Orwell page",
           "hops": [{"title": "Animal Farm", "passage_id": "620:1:0:0",
                     "evidence": "Animal Farm is a novella by George Orwell."},
                    {"title": "George Orwell"}]}
SINGLE = {"id": "hq-1", "question": "What is the capital of Alabama?", "answer": "Montgomery", "kind": "what"}


def _write(path, *records) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")


def test_multi_hop_lines_load_their_hops_in_order(tmp_path):
    _write(tmp_path / "set.jsonl", BRIDGE, MISSING, SINGLE)
    bridge, missing, single = load_questions(tmp_path / "set.jsonl")
    assert bridge.hop_kind == "bridge" and bridge.bridge == "Arabic"
    assert [hop.title for hop in bridge.hops] == ["Algeria", "Afroasiatic languages"]
    assert bridge.hop_passage_ids == ["358:1:26:36", "599:1:0:0"]
    assert bridge.hops[0].evidence == HOP_ALGERIA["evidence"]
    # the hop an unanswerable question misses has a title and nothing else
    assert missing.hop_passage_ids == ["620:1:0:0", None] and missing.hops[1].evidence is None
    # a single-hop line is untouched: no hops, no hop kind
    assert single.hops == [] and single.hop_kind is None and single.hop_passage_ids == []


def test_a_saved_multi_hop_set_loads_back_the_same(tmp_path):
    questions = [EvalQuestion.model_validate(record) for record in (BRIDGE, MISSING, SINGLE)]
    save_questions(questions, tmp_path / "out.jsonl")
    assert load_questions(tmp_path / "out.jsonl") == questions
    assert "hops" not in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()[2]


@pytest.mark.parametrize("broken, reason", [
    ({**BRIDGE, "hop_kind": None}, "hops and hop_kind go together"),
    ({**SINGLE, "hop_kind": "comparison"}, "hops and hop_kind go together"),
    ({**BRIDGE, "hop_kind": "intersection"}, "'bridge' or 'comparison'"),
    ({**BRIDGE, "hops": [HOP_ALGERIA]}, "at least two hops"),
    ({**BRIDGE, "hops": [HOP_ALGERIA, {"title": "Afroasiatic languages"}]}, "names its passage_id and evidence"),
    ({**BRIDGE, "hops": [HOP_ALGERIA, {**HOP_AFRO, "title": ""}]}, "hops.1.title"),
])
def test_a_malformed_multi_hop_question_says_what_is_wrong(broken, reason):
    with pytest.raises(ValidationError, match=reason):
        EvalQuestion.model_validate(broken)


def test_the_loader_names_the_line_of_a_malformed_multi_hop_question(tmp_path):
    _write(tmp_path / "set.jsonl", SINGLE, BRIDGE, {**BRIDGE, "hops": [HOP_ALGERIA]})
    with pytest.raises(QuestionSetError, match=r"set\.jsonl:3: not a valid question line"):
        load_questions(tmp_path / "set.jsonl")
