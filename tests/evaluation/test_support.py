"""The independent citation checker and ALCE bookkeeping on hand-made sentences and evidence."""

import numpy as np

from evaluation.support import SupportChecker, judge_sentence, key_tokens, strip_markers

ALABAMA = "Alabama is a state in the southeastern region of the United States. Its capital is Montgomery."
LINCOLN = "Abraham Lincoln was born on February 12, 1809, in a log cabin near Hodgenville, Kentucky."


def test_markers_are_stripped_and_key_tokens_are_names_and_numbers():
    assert strip_markers("The capital is Montgomery [1][F2].") == "The capital is Montgomery ."
    assert key_tokens("The capital of Alabama is Montgomery [1].") == {"alabama", "montgomery"}
    assert "1809" in key_tokens("Lincoln was born in 1809.")


def test_supported_when_names_and_most_words_are_in_the_evidence():
    checker = SupportChecker()
    assert checker.supports("The capital of Alabama is Montgomery [1].", ALABAMA)
    assert checker.supports("Lincoln was born in 1809 near Hodgenville [2].", LINCOLN)


def test_a_name_or_number_missing_from_the_evidence_is_unsupported():
    checker = SupportChecker()
    assert not checker.supports("The capital of Alabama is Birmingham [1].", ALABAMA)
    assert not checker.supports("Lincoln was born in 1810 near Hodgenville.", LINCOLN)
    assert not checker.supports("Montgomery.", "")


def test_similarity_rescues_a_paraphrase_only_when_an_embedder_says_so():
    sentence = "Montgomery serves as the seat of government for Alabama."
    close = lambda texts: np.array([[1.0, 0.0], [0.8, 0.6]], dtype=np.float32)  # noqa: E731 cosine 0.8
    far = lambda texts: np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)  # noqa: E731 cosine 0
    assert not SupportChecker().supports(sentence, ALABAMA)
    assert SupportChecker(embed=close).supports(sentence, ALABAMA)
    assert not SupportChecker(embed=far).supports(sentence, ALABAMA)


def test_alce_precision_counts_a_citation_the_sentence_does_not_need_as_imprecise():
    checker = SupportChecker()
    sentence = "The capital of Alabama is Montgomery [1][2]."
    judged = judge_sentence(checker, sentence, [ALABAMA, LINCOLN])
    assert (judged.supported, judged.citations, judged.precise) == (True, 2, 1)


def test_alce_sentence_supported_only_jointly_keeps_both_citations():
    checker = SupportChecker()
    sentence = "Lincoln was born near Hodgenville; the capital of Alabama is Montgomery."
    judged = judge_sentence(checker, sentence, [ALABAMA, LINCOLN])
    assert (judged.supported, judged.precise) == (True, 2)


def test_uncited_or_unsupported_sentences_earn_nothing():
    checker = SupportChecker()
    assert judge_sentence(checker, "Montgomery is the capital.", []).supported is False
    judged = judge_sentence(checker, "The capital of Alabama is Tuscaloosa [1].", [ALABAMA])
    assert (judged.supported, judged.citations, judged.precise) == (False, 1, 0)
