"""Scoring continuations: the cached-prompt batch agrees with a hand-computed bigram LM, and with full passes on the real LM."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from models.lm.scoring import Scored, score_on_model


def log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


VOCAB = 6
STOP = 5
RNG = np.random.default_rng(0)
TABLE = RNG.normal(size=(VOCAB, VOCAB)) * 2  # logits of the next token given the current one


class _Cache:
    def __init__(self, last):
        self.last = last

    def batch_repeat_interleave(self, rows):
        self.last = self.last.repeat_interleave(rows, dim=0)


class BigramModel:
    """A transformers causal LM's call contract over a bigram table: logits [B, T, V] and a KV cache
    (here the last token before the new ones, all that a bigram model needs)."""

    device = "cpu"

    def __call__(self, input_ids, attention_mask=None, past_key_values=None, use_cache=False):
        import torch

        logits = torch.tensor(TABLE[input_ids.numpy()])
        if past_key_values is not None:
            assert past_key_values.last.shape[0] == input_ids.shape[0]
        return SimpleNamespace(logits=logits, past_key_values=_Cache(input_ids[:, -1:]))


def expected(prompt, continuation):
    lp = log_softmax(TABLE)
    tokens, stops, last = [], [], prompt[-1]
    for token in continuation:
        tokens.append(lp[last, token])
        stops.append(lp[token, STOP])
        last = token
    return tokens, stops


CONTINUATIONS = [[1], [2, 3, 4], [4, 4]]


def test_scores_match_the_bigram_lm():
    pytest.importorskip("torch")
    prompt = [0, 3, 2]
    got = score_on_model(BigramModel(), prompt, CONTINUATIONS, [STOP])
    assert len(got) == len(CONTINUATIONS)
    for (tokens, stops), continuation in zip(got, CONTINUATIONS):
        want_tokens, want_stops = expected(prompt, continuation)
        assert len(tokens) == len(continuation)
        np.testing.assert_allclose(tokens, want_tokens, atol=1e-5)
        np.testing.assert_allclose(stops, want_stops, atol=1e-5)


def test_an_empty_continuation_is_refused():
    with pytest.raises(ValueError):
        score_on_model(BigramModel(), [0], [[1], []], [STOP])


def test_prefix_score_needs_a_token_boundary():
    scored = Scored("New York", ends=(3, 8), logprobs=(-1.0, -0.5), stop_logprobs=(-2.0, -0.1))
    assert scored.prefix(3) == (-3.0, 2)
    total, count = scored.prefix(8)
    assert math.isclose(total, -1.6) and count == 3
    assert scored.prefix(5) is None


@pytest.mark.slow
def test_cached_prompt_scores_equal_one_full_pass_per_continuation(project_settings):
    import torch

    from models.lm.local_generator import LocalGenerator

    messages = [{"role": "system", "content": "Answer with the exact words of the text."},
                {"role": "user", "content": "Text: His mother was the nymph Thetis.\nQuestion: Who was his mother?"}]
    continuations = ["the nymph Thetis", "Thetis", "His mother"]
    generator = LocalGenerator(project_settings, batch_size=1)
    try:
        scored = generator.score(messages, continuations)
        model, prompt = generator._backend.lm.model, generator.prompt_ids(messages)
        for item in scored:
            ids = generator.tokenizer(item.text, add_special_tokens=False)["input_ids"]
            with torch.inference_mode():
                logits = model(input_ids=torch.tensor([prompt + ids])).logits[0].float().numpy()
            lp = log_softmax(logits)
            want = [lp[len(prompt) - 1 + i, t] for i, t in enumerate(ids)]
            np.testing.assert_allclose(item.logprobs, want, atol=1e-3)
        nymph, thetis, _ = scored
        assert nymph.prefix(len("the nymph")) is not None  # a word boundary is a token boundary
        # "Thetis." is a likelier whole answer than "the nymph." (the answer's end counted)
        assert thetis.prefix(len("Thetis"))[0] > nymph.prefix(len("the nymph"))[0]
    finally:
        generator.close()
