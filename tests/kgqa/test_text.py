from kgqa.text import ContentWordCoder, content_words, fold, number_words, numbers, without_words

TEXTS = ["The capitals of the United States' states", "Orwell's Animal Farm (1945): animals, ANIMALS and cities",
         "a I to", "", "Café déjà-vu naïve CAFÉ 3.5 km, 1,819 people"]


def test_text_helpers():
    assert fold("Capitals") == "capital" and fold("cities") == "city" and fold("Orwell's") == "orwell"
    assert "the" not in content_words("the capital of Alabama")
    assert numbers("founded in 1,819 and 3.5 km") == {"1819", "3.5"}


def test_a_stopword_is_not_folded_into_a_content_word():
    # "does" folded as a plural was "doe": a content word every "does" question carried into overlap and relations
    assert fold("does") == "does" and fold("Does") == "does"
    assert content_words("How many counties does Alabama have?") == ["county", "alabama"]


def test_a_count_spelled_out_is_a_number():
    assert number_words("Over three million copies; only five students came.") == {"three", "million", "five"}
    assert number_words("Someone said none of it") == set()  # "one" inside a word is no number


def test_the_coder_gives_content_words_as_ids_of_one_vocabulary():
    coder = ContentWordCoder()
    encoded = [coder.encode(text) for text in TEXTS * 2]  # the second time from its memo
    words = list(coder.vocab)
    assert [[words[at] for at in ids] for ids in encoded] == [content_words(text) for text in TEXTS * 2]
    assert coder.encode("a I to") == [] and coder.id("<empty>") == len(words)


def test_words_are_taken_out_by_their_folded_form_and_the_rest_stays_as_written():
    assert without_words("What is Alabama's state flower?", {"alabama"}) == "What is  state flower?"
    assert without_words("Aardvarks eat ants.", {"aardvark", "ant"}) == " eat ."
    assert without_words("Who was Plato?", set()) == "Who was Plato?"
