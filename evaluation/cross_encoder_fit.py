"""Fine-tune the claim checker's cross-encoder on dev claims (``models.cross_encoder``), on this CPU.

Each dev claim contributes its ``PAIRS_PER_CLAIM`` likeliest evidence sentences (by what
the sentence holds of the claim's answer and words): label 1 where the claim is right and
the sentence states the gold answer, else 0; each right claim also gives ``SWAPS_PER_CLAIM``
wrong ones against the sentence that states it, its answer swapped for another phrase of that
sentence (``swapped_claims``), so the model learns which phrase the sentence binds to the asked
relation and not only which words it holds. The bundled all-MiniLM-L6-v2 gets a one-logit
head; its embeddings and first layers stay frozen, its last ``TRAINED_LAYERS`` layers and
the head learn with binary cross-entropy (AdamW, linear warm-up and decay, seeded), so the
weights file holds only those layers. On the project's 2-core CPU one epoch over the 497
dev questions' claims takes about three minutes.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kgqa.progress import progress_bar
from kgqa.text import STOPWORDS, fold, words
from models.cross_encoder import MAX_TOKENS, base_model, pair_texts, save_trained, trained_layer_names

TRAINED_LAYERS = 3
PAIRS_PER_CLAIM = 3
SWAPS_PER_CLAIM = 3  # wrong claims made from each right one (``swapped_claims``)
EPOCHS = 3
BATCH = 16
BODY_LR, HEAD_LR = 1e-4, 1e-3
SEED = 13


def examples(checked: Sequence, rng: random.Random | None = None) -> list[tuple[str, str, float]]:
    """(first text, second text, label) for the likeliest sentences of each claim (``CheckedClaim``), and the
    swapped claims (``swapped_claims``) of each right one against the sentence that states it."""
    rng = rng or random.Random(SEED)
    found = []
    for claim in checked:
        if not len(claim.matrix):
            continue
        order = np.argsort(-(claim.matrix[:, 0] + claim.matrix[:, 1]), kind="stable")[:PAIRS_PER_CLAIM]
        for j in order:
            sentence = claim.sentences[j]
            first, second = pair_texts(claim.question.question, claim.claim.text, sentence.title, sentence.text)
            found.append((first, second, float(claim.right and bool(claim.states_gold[j]))))
        if claim.right and claim.states_gold.any():
            sentence = claim.sentences[int(np.argmax(claim.states_gold))]
            for swapped in swapped_claims(claim.claim.text, claim.question.answers, claim.question.question,
                                          sentence.text, rng):
                found.append((*pair_texts(claim.question.question, swapped, sentence.title, sentence.text), 0.0))
    return found


# A phrase of a sentence: a run of words between stopwords and punctuation (as RAKE finds key phrases).
_PHRASE = re.compile(r"[^\W_]+(?:[-'’.,][^\W_]+)*(?:\s+[^\W_]+(?:[-'’.,][^\W_]+)*)*", re.UNICODE)


def phrases(text: str) -> list[str]:
    """The runs of non-stopwords of ``text``, as written: the spans a claim could answer with."""
    found = []
    for run in _PHRASE.finditer(text):
        current: list[str] = []
        for word in run.group(0).split():
            if fold(word) in STOPWORDS:
                if current:
                    found.append(" ".join(current))
                current = []
            else:
                current.append(word)
        if current:
            found.append(" ".join(current))
    return found


def swapped_claims(claim: str, answers: Sequence[str], question: str, sentence: str,
                   rng: random.Random) -> list[str]:
    """Wrong claims made from a right one: its answer replaced by another phrase of the sentence that states it.

    "Alabama's state flower is the camellia." against "The state tree is the longleaf pine, and the
    state flower is the camellia." gives "Alabama's state flower is the longleaf pine.": a claim
    whose every word the sentence holds, bound there to another relation. A number is swapped for
    a number (of the sentence's numbers), a name for a name, a phrase for a phrase.
    """
    answer = next((a for a in answers if a and re.search(rf"(?<!\w){re.escape(a)}(?!\w)", claim, re.I)), "")
    if not answer:
        return []
    taken = set(words(answer)) | set(words(question))
    numeric, named = any(c.isdigit() for c in answer), answer[:1].isupper()
    rivals = []
    candidates = re.findall(r"\d+(?:[.,]\d+)*", sentence) if numeric else phrases(sentence)
    for phrase in dict.fromkeys(candidates):
        folded = set(words(phrase))
        if not folded or folded & taken or (not numeric and (any(c.isdigit() for c in phrase)
                                                              or phrase[:1].isupper() != named)):
            continue
        rivals.append(phrase)
    rng.shuffle(rivals)
    pattern = re.compile(rf"(?<!\w){re.escape(answer)}(?!\w)", re.I)
    return [pattern.sub(lambda _: rival, claim, count=1) for rival in rivals[:SWAPS_PER_CLAIM]]


def train(checked: Sequence, *, progress: bool = False):
    """The base model with its last layers fine-tuned on ``checked``'s pairs; returns (model, tokenizer)."""
    import torch

    torch.manual_seed(SEED)
    rng = random.Random(SEED)
    data = examples(checked, rng)
    model, tokenizer = base_model()
    layers = model.config.num_hidden_layers
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith(trained_layer_names(layers, TRAINED_LAYERS))
    head = [p for n, p in model.named_parameters() if n.startswith("classifier.")]
    body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("classifier.")]
    optimiser = torch.optim.AdamW([{"params": body, "lr": BODY_LR}, {"params": head, "lr": HEAD_LR}], weight_decay=0.01)
    steps = EPOCHS * ((len(data) + BATCH - 1) // BATCH)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / (0.1 * steps)) * max(0.0, (steps - step) / steps))
    model.train()
    with progress_bar(total=steps, desc="cross-encoder", unit="batch", enabled=progress) as bar:
        for _ in range(EPOCHS):
            rng.shuffle(data)
            for start in range(0, len(data), BATCH):
                batch = data[start:start + BATCH]
                encoded = tokenizer([b[0] for b in batch], [b[1] for b in batch], truncation=True,
                                    max_length=MAX_TOKENS, padding=True, return_tensors="pt")
                logits = model(**encoded).logits.reshape(-1)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, torch.tensor([b[2] for b in batch], dtype=torch.float32))
                loss.backward()
                optimiser.step()
                schedule.step()
                optimiser.zero_grad()
                bar.update()
    model.eval()
    return model, tokenizer


def save(model, path: Path) -> None:
    save_trained(model, path, TRAINED_LAYERS)
