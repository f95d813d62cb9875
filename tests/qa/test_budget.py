from kgqa.records import FactHit, PassageHit
from qa.budget import CPU_EVIDENCE_TOKENS, GPU_EVIDENCE_TOKENS, evidence_budget, select_evidence


def count(text: str) -> int:
    return len(text.split())


def passage(i: int, words: int) -> PassageHit:
    return PassageHit(passage_id=f"p{i}", page_id=i, title=f"T{i}", section="", text=" ".join(["w"] * words),
                      url="u", score=1.0)


FACT = FactHit(triple_id=1, subject="Alabama", predicate="capital", object="Montgomery", object_is_entity=True,
               page_id=1, rev_id=1, field="capital", url="u", score=2.0)


def test_budget_by_device_unless_configured():
    assert evidence_budget(0, "cpu") == CPU_EVIDENCE_TOKENS < evidence_budget(0, "cuda:0") == GPU_EVIDENCE_TOKENS
    assert evidence_budget(700, "cpu") == 700


def test_facts_first_then_whole_passages_then_a_cut_one_within_budget():
    chosen = select_evidence([passage(1, 30), passage(2, 30), passage(3, 200)], [FACT], 130, count)
    assert chosen.facts == [FACT]
    assert [p.passage_id for p in chosen.passages] == ["p1", "p2", "p3"]
    assert chosen.passages[2].text.endswith("…") and len(chosen.passages[2].text.split()) < 200
    assert chosen.tokens <= 130


def test_a_sliver_of_a_passage_is_not_included():
    chosen = select_evidence([passage(1, 30), passage(2, 200)], [], 50, count)
    assert [p.passage_id for p in chosen.passages] == ["p1"]
