from qa.sentences import markers_in, sentence_spans, split_sentences, strip_markers, with_markers


def test_abbreviations_initials_decimals_and_trailing_markers():
    text = ("The capital is Montgomery [1]. It joined in 1819.[F1] George W. Bush met the U.S. Army "
            "for 3.5 days. Dr. Smith agreed!")
    assert split_sentences(text) == [
        "The capital is Montgomery [1].",
        "It joined in 1819.[F1]",
        "George W. Bush met the U.S. Army for 3.5 days.",
        "Dr. Smith agreed!",
    ]


def test_lines_and_bullets_separate_and_marker_only_pieces_vanish():
    assert split_sentences("- First point\n2. Second point\n[2]") == ["First point", "Second point [2]"]
    assert split_sentences("   ") == []


def test_markers_read_strip_and_write():
    assert markers_in("a [ f1 ] b [2] [F1]") == ["F1", "2"]
    assert strip_markers("Montgomery [1] [F2] .") == "Montgomery."
    assert with_markers("The capital is Montgomery [9].", ["F1", "1"]) == "The capital is Montgomery [F1][1]."
    assert with_markers("No stop", ["2"]) == "No stop [2]"


def test_a_line_break_in_a_passage_ends_its_sentence():
    text = "Aberdeen may refer to:\nAberdeen College, formerly a college in Scotland\nAberdeen Hall, a school in Kelowna. It opened in 1999."
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "Aberdeen may refer to:",
        "Aberdeen College, formerly a college in Scotland",
        "Aberdeen Hall, a school in Kelowna.",
        "It opened in 1999.",
    ]
