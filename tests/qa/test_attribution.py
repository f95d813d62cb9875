from qa.attribution import Attributor, EvidenceItem, lexical_support

EVIDENCE = [
    EvidenceItem("F1", "Alabama — capital: Montgomery, Alabama"),
    EvidenceItem("1", "Alabama is a state in the Southeastern United States. Birmingham is its largest city."),
    EvidenceItem("2", "Animal Farm is a novella by George Orwell, first published in England in 1945."),
]
Q = "What is the capital of Alabama?"


def test_supported_sentence_cites_the_evidence_that_backs_it():
    [result] = Attributor().attribute(["The capital of Alabama is Montgomery."], EVIDENCE, Q)
    assert result.supported and result.citations[0] == "F1"


def test_invented_names_and_numbers_are_unsupported():
    results = Attributor().attribute(
        ["The capital of Alabama is Tuscaloosa, founded by Napoleon.", "It has 42 million residents in 2077."],
        EVIDENCE, Q,
    )
    assert [r.supported for r in results] == [False, False]
    assert lexical_support("Published in 1946.", EVIDENCE[2].text, "When was Animal Farm published?") < \
        lexical_support("Published in 1945.", EVIDENCE[2].text, "When was Animal Farm published?")


def test_written_markers_are_verified_not_trusted():
    [result] = Attributor().attribute(["Animal Farm was written by George Orwell [1][7]."], EVIDENCE,
                                      "Who wrote Animal Farm?")
    assert result.written_markers == ["1", "7"]
    assert set(result.rejected_markers) == {"1", "7"}  # [1] is about Alabama, [7] does not exist
    assert result.citations == ["2"]
