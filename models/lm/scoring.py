"""How likely the LM finds given continuations of a prompt, token by token (no generation).

Extractive answering asks this of candidate answer spans: log P(span | prompt) and
the probability that the answer ends right after it. One prompt, many continuations:
the prompt runs once and its cache is repeated for every continuation, which all run
together in one more forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Scored:
    """One continuation as the LM reads it after the prompt.

    ``ends[i]`` is the character offset in ``text`` where token ``i`` ends,
    ``logprobs[i]`` is log P(token i | prompt, tokens before it) and ``stop_logprobs[i]``
    the log-probability that the answer ends (an end-of-turn token) right after token i.
    """

    text: str
    ends: tuple[int, ...]
    logprobs: tuple[float, ...]
    stop_logprobs: tuple[float, ...]

    def prefix(self, end: int) -> tuple[float, int] | None:
        """Log P(``text[:end]`` and then the end of the answer) and its token count (the stop counted);
        None when no token ends exactly at ``end``."""
        if end not in self.ends:
            return None
        last = self.ends.index(end)
        return float(sum(self.logprobs[: last + 1]) + self.stop_logprobs[last]), last + 2


def tokenize_continuations(tokenizer, texts: Sequence[str]) -> list[tuple[list[int], tuple[int, ...]]]:
    """Each text's token ids and the character offset where each token ends."""
    encoded = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    return [(ids, tuple(int(end) for _, end in offsets))
            for ids, offsets in zip(encoded["input_ids"], encoded["offset_mapping"])]


def score_on_model(model, prompt: list[int], continuations: Sequence[list[int]], stop_ids: Sequence[int],
                   pad_id: int = 0) -> list[tuple[list[float], list[float]]]:
    """Per continuation: log P of each token and log P(stop) after it, on a transformers causal LM.

    The prompt runs once; its KV cache is repeated for every continuation, and all
    continuations (right-padded) then run in one forward pass that yields every position's
    logits. (The onnx decoder's graph gives the last position's logits only, so scoring there
    would take one step per token with the whole cache copied at each.)
    """
    import torch

    if not continuations or any(not c for c in continuations):
        raise ValueError("every continuation needs at least one token")
    rows, width = len(continuations), max(len(c) for c in continuations)
    ids = torch.full((rows, width), pad_id, dtype=torch.long)
    mask = torch.zeros((rows, len(prompt) + width), dtype=torch.long)
    mask[:, : len(prompt)] = 1
    for r, cont in enumerate(continuations):
        ids[r, : len(cont)] = torch.tensor(cont)
        mask[r, len(prompt): len(prompt) + len(cont)] = 1
    device = model.device
    with torch.inference_mode():
        head = model(input_ids=torch.tensor([prompt], device=device), use_cache=True)
        cache = head.past_key_values
        cache.batch_repeat_interleave(rows)
        tail = model(input_ids=ids.to(device), attention_mask=mask.to(device), past_key_values=cache, use_cache=True)
        first = torch.log_softmax(head.logits[0, -1].float(), dim=-1).cpu().numpy()
        # [rows, width, V]: position i predicts token i + 1; only the asked-for columns leave torch
        logprobs = torch.log_softmax(tail.logits.float(), dim=-1)
        following = torch.tensor([list(c[1:]) + [0] * (width - len(c) + 1) for c in continuations],
                                 device=logprobs.device)
        token_next = logprobs.gather(2, following[:, :, None])[:, :, 0].cpu().numpy()
        stops = torch.logsumexp(logprobs[:, :, list(stop_ids)], dim=-1).cpu().numpy()
    results = []
    for r, cont in enumerate(continuations):
        n = len(cont)
        token_lp = [float(first[cont[0]])] + token_next[r, : n - 1].tolist()
        results.append((token_lp, stops[r, :n].tolist()))
    return results


def assemble(texts: Sequence[str], tokenized, scores) -> list[Scored]:
    return [Scored(text, ends, tuple(lp), tuple(stop))
            for text, (_, ends), (lp, stop) in zip(texts, tokenized, scores)]
