"""The chat-completions format shared by the remote and llama.cpp generators: bodies, answers, stop strings."""

from __future__ import annotations

import pytest

from models.lm.chat_protocol import MalformedAnswer, StopText, chat_request, read_chunk, read_completion
from models.lm.generator import GenerationConfig

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]


def feed_all(cut: StopText, pieces: list[str]) -> list[str]:
    out = [cut.feed(p) for p in pieces]
    return [p for p in [*out, cut.flush()] if p]


def test_a_stop_string_split_across_pieces_is_cut_and_never_released():
    cut = StopText(["<evidence>"])
    released = feed_all(cut, ["Montgomery is", " the capital <evi", "dence> [1] more", " text"])
    assert "".join(released) == "Montgomery is the capital "
    assert cut.stopped and all("<" not in piece for piece in released)


def test_text_that_only_looked_like_a_stop_start_is_released_when_it_turns_out_otherwise():
    cut = StopText(["</evidence>"])
    assert cut.feed("a </") == "a "  # "</" could start the stop string: held back
    assert cut.feed("b> c") == "</b> c"
    assert cut.flush() == "" and not cut.stopped


def test_the_earliest_of_several_stops_wins_and_later_pieces_are_ignored():
    cut = StopText(["STOP", "\n\n"])
    assert "".join(feed_all(cut, ["one\n", "\ntwo STOP three"])) == "one"
    assert cut.feed("more") == ""


def test_without_stops_every_piece_passes_at_once():
    cut = StopText([])
    assert [cut.feed(p) for p in ["a", "b"]] == ["a", "b"]


def test_greedy_requests_send_temperature_zero_and_at_most_four_stops():
    config = GenerationConfig.build(max_new_tokens=12, stop=["a", "b", "c", "d", "e"])
    body = chat_request(MESSAGES, config, model="m", stream=True)
    assert body == {"messages": MESSAGES, "max_tokens": 12, "stream": True, "model": "m",
                    "temperature": 0.0, "stop": ["a", "b", "c", "d"]}


def test_sampling_sends_its_knobs_and_seed():
    config = GenerationConfig(do_sample=True, temperature=0.7, top_p=0.9, seed=3)
    body = chat_request(MESSAGES, config, stream=False)
    assert (body["temperature"], body["top_p"], body["seed"]) == (0.7, 0.9, 3) and "model" not in body


@pytest.mark.parametrize("config, match", [
    (GenerationConfig(num_beams=2), "beam search"),
    (GenerationConfig(min_new_tokens=4), "min_new_tokens"),
])
def test_what_the_protocol_cannot_say_is_refused(config, match):
    with pytest.raises(ValueError, match=match):
        chat_request(MESSAGES, config, stream=False)


@pytest.mark.parametrize("messages", [[], [{"role": "user"}], ["hi"], [{"role": "user", "content": 3}]])
def test_malformed_messages_are_refused(messages):
    with pytest.raises(ValueError, match="message"):
        chat_request(messages, GenerationConfig(), stream=False)


def test_a_whole_answer_and_a_chunk_are_read_with_their_counts():
    answer = read_completion({"choices": [{"message": {"content": "Hi."}, "finish_reason": "length"}],
                              "usage": {"prompt_tokens": 7, "completion_tokens": 2}})
    assert (answer.text, answer.finish_reason, answer.prompt_tokens, answer.new_tokens) == ("Hi.", "length", 7, 2)
    assert read_chunk({"choices": [{"delta": {"content": "H"}, "finish_reason": None}]}).text == "H"
    assert read_chunk({"choices": [{"delta": {"role": "assistant", "content": None}}]}).text == ""
    assert read_chunk({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1}}).prompt_tokens == 5


@pytest.mark.parametrize("payload, match", [
    ([1, 2], "JSON list, not an object"),
    ({"id": "x"}, "no 'choices' list"),
    ({"choices": []}, "'choices' list is empty"),
    ({"choices": [{"text": "legacy"}]}, "no 'message' object"),
    ({"choices": [{"message": {"content": 5}}]}, "content is a int"),
    ({"error": {"message": "model  not\nloaded"}}, "reports an error: model not loaded"),
])
def test_anything_but_the_documented_shape_is_a_malformed_answer(payload, match):
    with pytest.raises(MalformedAnswer, match=match):
        read_completion(payload)
