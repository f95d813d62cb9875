"""Fine-tune the claim checker's cross-encoder on dev claims (``models.cross_encoder``), on this CPU.

Each dev claim contributes its ``PAIRS_PER_CLAIM`` likeliest evidence sentences (by what
the sentence holds of the claim's answer and words): label 1 where the claim is right and
the sentence states the gold answer, else 0. The bundled all-MiniLM-L6-v2 gets a one-logit
head; its embeddings and first layers stay frozen, its last ``TRAINED_LAYERS`` layers and
the head learn with binary cross-entropy (AdamW, linear warm-up and decay, seeded), so the
weights file holds only those layers. On the project's 2-core CPU one epoch over the 497
dev questions' claims takes about three minutes.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.cross_encoder import MAX_TOKENS, base_model, pair_texts, save_trained, trained_layer_names

TRAINED_LAYERS = 3
PAIRS_PER_CLAIM = 3
EPOCHS = 3
BATCH = 16
BODY_LR, HEAD_LR = 1e-4, 1e-3
SEED = 13


def examples(checked: Sequence) -> list[tuple[str, str, float]]:
    """(first text, second text, label) for the likeliest sentences of each claim (``CheckedClaim``)."""
    found = []
    for claim in checked:
        if not len(claim.matrix):
            continue
        order = np.argsort(-(claim.matrix[:, 0] + claim.matrix[:, 1]), kind="stable")[:PAIRS_PER_CLAIM]
        for j in order:
            sentence = claim.sentences[j]
            first, second = pair_texts(claim.question.question, claim.claim.text, sentence.title, sentence.text)
            found.append((first, second, float(claim.right and bool(claim.states_gold[j]))))
    return found


def train(checked: Sequence, *, progress: bool = False):
    """The base model with its last layers fine-tuned on ``checked``'s pairs; returns (model, tokenizer)."""
    import torch
    from tqdm import tqdm

    torch.manual_seed(SEED)
    rng = random.Random(SEED)
    data = examples(checked)
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
    with tqdm(total=steps, desc="cross-encoder", unit="batch", disable=not progress) as bar:
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
