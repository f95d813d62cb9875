"""Does one evidence sentence state what a sentence of the answer claims? A classifier fitted on dev claims.

A claim is one sentence the LM wrote. What it answers the question with is what it
adds to the question: the names and numbers the question lacks (its *answer terms*),
else its new content words. No name or number of it may be missing from the evidence
(an invented detail sinks the claim), and it stands only on one evidence sentence (or
one infobox fact) that speaks of the question's subject and holds its answer: among
such sentences, the one the fitted model finds most likely to state it; a sentence
that puts another name or number of the claim's kind nearer the asked relation's word
binds that one to it, not the claim's ("Ankara is the capital of Turkey and Istanbul
its largest city" backs Ankara, never Istanbul). Where retrieval
found the subject's own article, only its sentences may back a claim (a statement in
another article must not answer for the subject, however it was planted there).

The model reads how much of what the claim adds the sentence holds, and of its answer
terms; whether each number stands next to the asked relation rather than another one
(``ClaimVerifier.number_bound``); whether the sentence is the subject's own; how much
of the asked relation it speaks of; whether the claim's answer stands nearer the
relation's word than any rival name or number of the sentence ("Ankara is the capital
of Turkey and Istanbul its largest city" backs Ankara, not Istanbul); the embedder's
cosine of claim and sentence, and of question and sentence; where retrieval put the sentence;
and the logit of a cross-encoder that reads question, claim and sentence together
(``models.cross_encoder``, fine-tuned from the bundled all-MiniLM-L6-v2 on the same dev
claims).
Its trees and threshold are fitted on the dev split's hand-written claims
(``kgqa eval fit-checker``) and live in ``qa/checker_model.json`` with the dev figures
they came from; a claim whose best sentence falls below the threshold is dropped.

Before any sentence is read, a claim must give the kind of answer asked for
(``qa.claims.answer_kind_missing``): a where-question never gets a date.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from kgqa.errors import KgqaError
from kgqa.text import content_words, fold, numbers
from models.cross_encoder import ClaimCrossEncoder, pair_texts
from qa.claims import (
    MONTHS,
    META_WORDS,
    ClaimVerifier,
    QuestionFrame,
    Reading,
    Verdict,
    answer_kind_missing,
    measure_question_similarities,
    names,
    tokens_of,
)
from qa.sentences import strip_markers
from qa.tuning import RIVAL_MARGIN_CAP, SAME_MEANING

CHECK_FEATURES = (
    "coverage",
    "terms_held",
    "numbers_bound",
    "subject_named",
    "relation_share",
    "relation_closeness",
    "answer_nearest",
    "rival_margin",
    "claim_similarity",
    "question_similarity",
    "own_article",
    "is_fact",
    "passage_rank",
    "cross_encoder",
)
MODEL_PATH = Path(__file__).with_name("checker_model.json")


class CheckerModelError(KgqaError):
    """The claim checker's model file is missing or does not fit this code's features."""


@dataclass(frozen=True)
class Tree:
    """One regression tree of the checker's boosted ensemble, as flat node arrays (scikit-learn's layout).

    A row goes left at a split node when its feature is at most the threshold (a missing value
    goes where ``missing_left`` says); a leaf adds its value to the row's log-odds
    (``CheckerModel.probabilities`` walks every tree at once).
    """

    feature: tuple[int, ...]
    threshold: tuple[float, ...]
    left: tuple[int, ...]
    right: tuple[int, ...]
    value: tuple[float, ...]
    leaf: tuple[bool, ...]
    missing_left: tuple[bool, ...]

    def as_dict(self) -> dict:
        return {"feature": list(self.feature), "threshold": [float(t) for t in self.threshold],
                "left": list(self.left), "right": list(self.right),
                "value": [round(float(v), 7) for v in self.value], "leaf": [int(b) for b in self.leaf],
                "missing_left": [int(b) for b in self.missing_left]}

    @classmethod
    def from_dict(cls, raw: dict) -> "Tree":
        tree = cls(tuple(int(f) for f in raw["feature"]), tuple(float(t) for t in raw["threshold"]),
                   tuple(int(i) for i in raw["left"]), tuple(int(i) for i in raw["right"]),
                   tuple(float(v) for v in raw["value"]), tuple(bool(b) for b in raw["leaf"]),
                   tuple(bool(b) for b in raw["missing_left"]))
        sizes = {len(tree.feature), len(tree.threshold), len(tree.left), len(tree.right), len(tree.value),
                 len(tree.leaf), len(tree.missing_left)}
        if len(sizes) != 1 or not tree.feature:
            raise ValueError("a tree's node arrays differ in length")
        nodes = len(tree.feature)
        for i, is_leaf in enumerate(tree.leaf):
            # Children come after their parent (as scikit-learn numbers them), so every walk ends at a leaf.
            if not is_leaf and not (i < tree.left[i] < nodes and i < tree.right[i] < nodes
                                    and 0 <= tree.feature[i] < len(CHECK_FEATURES)):
                raise ValueError(f"a tree's node {i} points outside the tree or the features")
        return tree


@dataclass(frozen=True)
class CheckerModel:
    """Gradient-boosted trees over ``CHECK_FEATURES`` and the least probability a shown claim needs.

    The probability of a pair is the logistic of ``baseline`` plus every tree's leaf value
    (scikit-learn's ``HistGradientBoostingClassifier``, fitted by ``kgqa eval fit-checker``, its
    trees stored as plain node arrays so no pickle is ever loaded).
    """

    trees: tuple[Tree, ...]
    baseline: float
    threshold: float
    features: tuple[str, ...] = CHECK_FEATURES
    provenance: dict = field(default_factory=dict)
    cross_encoder: str = ""  # the cross-encoder's weights file, beside the model file ("" reads no cross-encoder)

    def __post_init__(self):
        if tuple(self.features) != CHECK_FEATURES:
            raise CheckerModelError(
                f"the claim checker was fitted on features {list(self.features)}, this code reads "
                f"{list(CHECK_FEATURES)}: refit it with `kgqa eval fit-checker`")
        # Every tree's nodes in one set of arrays, each tree's children shifted by where its nodes start.
        starts = np.cumsum([0] + [len(t.feature) for t in self.trees])[:-1]
        nodes = {name: np.concatenate([np.asarray(getattr(t, name)) for t in self.trees]) if self.trees
                 else np.zeros(0) for name in ("feature", "threshold", "left", "right", "value", "leaf", "missing_left")}
        for name in ("left", "right"):
            nodes[name] = nodes[name].astype(np.int64) + np.repeat(starts, [len(t.feature) for t in self.trees])
        nodes["feature"] = nodes["feature"].astype(np.int64)
        nodes["leaf"] = nodes["leaf"].astype(bool)
        nodes["missing_left"] = nodes["missing_left"].astype(bool)
        object.__setattr__(self, "_nodes", nodes)
        object.__setattr__(self, "_roots", starts.astype(np.int64))

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """The probability that each row's sentence states its claim."""
        from scipy.special import expit

        matrix = np.asarray(matrix, dtype=np.float64).reshape(-1, len(CHECK_FEATURES))
        nodes = self._nodes
        at = np.broadcast_to(self._roots, (len(matrix), len(self._roots))).copy()  # rows x trees
        rows = np.arange(len(matrix))[:, None]
        while True:
            open_ = ~nodes["leaf"][at]
            if not open_.any():
                break
            x = matrix[np.broadcast_to(rows, at.shape)[open_], nodes["feature"][at[open_]]]
            here = at[open_]
            go_left = np.where(np.isnan(x), nodes["missing_left"][here], x <= nodes["threshold"][here])
            at[open_] = np.where(go_left, nodes["left"][here], nodes["right"][here])
        return expit(self.baseline + nodes["value"][at].sum(axis=1))

    def with_threshold(self, threshold: float, **provenance) -> "CheckerModel":
        return replace(self, threshold=threshold, provenance={**self.provenance, **provenance})

    @classmethod
    def load(cls, path: str | Path = MODEL_PATH) -> "CheckerModel":
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
            model = cls(trees=tuple(Tree.from_dict(t) for t in raw["trees"]), baseline=float(raw["baseline"]),
                        threshold=float(raw["threshold"]), features=tuple(raw["features"]),
                        provenance=raw.get("provenance", {}), cross_encoder=raw.get("cross_encoder", ""))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckerModelError(f"cannot read the claim checker's model {path}: {exc}") from exc
        if model.cross_encoder:  # a path relative to the model file, so a copied pair of files keeps working
            model = replace(model, cross_encoder=str(Path(path).parent / model.cross_encoder))
        return model

    def save(self, path: Path) -> None:
        record = {"threshold": self.threshold, "features": list(self.features), "provenance": self.provenance,
                  "cross_encoder": Path(self.cross_encoder).name if self.cross_encoder else "",
                  "baseline": self.baseline, "trees": [t.as_dict() for t in self.trees]}
        Path(path).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Claim:
    """One drafted sentence read against the question: what it adds, and the terms it answers with."""

    text: str  # without citation markers
    added: frozenset[str]  # content words the question lacks
    answer_terms: frozenset[str]  # folded names and numbers the question lacks (else ``added``)
    names: frozenset[str]
    numbers: frozenset[str]


def read_claim(text: str, frame: QuestionFrame, verifier: ClaimVerifier) -> Claim:
    text = strip_markers(text)
    added = set(content_words(text)) - frame.words - META_WORDS
    claim_names = names(text) - frame.words - META_WORDS
    # A word that means what a question word means ("world" for "Earth") adds nothing; a name or a
    # number always does (Tirana is not Albania, however near their vectors).
    added = {w for w in added if w[0].isdigit() or w in claim_names
             or verifier.words.best_match(w, frame.words)[0] < SAME_MEANING}
    claim_numbers = numbers(text) - frame.numbers
    terms = (claim_names | claim_numbers) - frame.subject_words
    return Claim(text, frozenset(added), frozenset(terms or added), frozenset(claim_names), frozenset(claim_numbers))


def gate(claim: Claim, frame: QuestionFrame) -> str:
    """Why ``claim`` cannot be an answer whatever the evidence says ("" when it may be)."""
    if not claim.added:
        return "the sentence only restates the question"
    if claim.added <= frame.subject_words:
        return "the sentence gives the question's subject back as its answer"
    return answer_kind_missing(frame, claim.text, reason_word=False)


def invented_terms(claim: Claim, readings: Sequence[Reading]) -> set[str]:
    """The claim's names and numbers that no evidence sentence holds: details the evidence cannot back.

    A hyphenated name counts when its parts stand there ("UTF-8", "Escaldes-Engordany"); the
    claim's first word is not read as a name (a capital that only starts the sentence:
    "Covering 2,381,741 km2, ..."), nor is a month (its date's numbers are checked).
    """
    stated = set().union(*(r.content | set(r.words) for r in readings)) if readings else set()
    first = fold(tokens_of(claim.text)[0]) if tokens_of(claim.text) else ""
    missing = set()
    for term in (claim.names - MONTHS - {first}) | claim.numbers:
        parts = [p for p in re.split(r"[-'’]", term) if p]
        if term not in stated and not all(p in stated or fold(p) in stated for p in parts):
            missing.add(term)
    return missing


def _positions(reading: Reading, terms: Iterable[str]) -> list[int]:
    wanted = set(terms)
    return [i for i, token in enumerate(reading.words) if token in wanted]


def rival_terms(reading: Reading, frame: QuestionFrame, claim: Claim) -> set[str]:
    """Names (for a claim answering with a name) or numbers (with a number) of the sentence that could answer
    instead of the claim's."""
    text = reading.sentence.text
    found: set[str] = set()
    if claim.names - frame.subject_words or not claim.numbers:
        found |= names(text) - MONTHS
    if claim.numbers:
        found |= numbers(text)
    return found - frame.words - frame.subject_words - claim.answer_terms - reading.title_words


def nearness(verifier: ClaimVerifier, frame: QuestionFrame, reading: Reading, claim: Claim) -> tuple[float, float]:
    """Whether the claim's answer stands nearest the asked relation's word, and by how many tokens.

    ``(1.0, margin)`` when no rival name or number stands nearer any matched relation word
    (margin: the rival's distance minus the claim's, in tokens, at most ``RIVAL_MARGIN_CAP``
    either way), ``(0.0, margin < 0)`` when one does. With no relation asked or matched,
    nothing is compared: ``(1.0, 0.0)``.
    """
    relations = [p for s, p in reading.relation_hits.values() if s >= verifier.thresholds.relation_match]
    mine = _positions(reading, claim.answer_terms)
    if not relations or not mine or reading.sentence.is_fact:
        return 1.0, 0.0
    rivals = _positions(reading, rival_terms(reading, frame, claim))
    own = min(abs(a - r) for a in mine for r in relations)
    if not rivals:
        return 1.0, float(RIVAL_MARGIN_CAP)
    other = min(abs(a - r) for a in rivals for r in relations)
    margin = float(max(-RIVAL_MARGIN_CAP, min(RIVAL_MARGIN_CAP, other - own)))
    return (1.0 if own <= other else 0.0), margin


@dataclass
class Pair:
    """A claim and one evidence sentence that passes the checks every answer must pass."""

    reading: Reading
    features: np.ndarray


class ClaimChecker:
    """Checks each sentence an LM writes against the evidence sentences of one question."""

    def __init__(self, verifier: ClaimVerifier, model: CheckerModel | None = None,
                 cross_encoder: ClaimCrossEncoder | None = None):
        self.verifier = verifier
        self.model = model
        self.cross_encoder = cross_encoder  # None: the "cross_encoder" feature reads 0

    @classmethod
    def of(cls, verifier: ClaimVerifier, model: CheckerModel) -> "ClaimChecker":
        """The checker ``model`` describes, with the cross-encoder it names (loaded on first use)."""
        return cls(verifier, model, ClaimCrossEncoder(Path(model.cross_encoder)) if model.cross_encoder else None)

    def warm_up(self) -> None:
        if self.cross_encoder is not None:
            self.cross_encoder.warm_up()

    def pairs(self, claim: Claim, frame: QuestionFrame, readings: Sequence[Reading],
              allowed: set[str] | None = None) -> tuple[list[Pair], str]:
        """The evidence sentences that may back ``claim``, with their features; else why none may."""
        reason = gate(claim, frame)
        if reason:
            return [], reason
        invented = invented_terms(claim, readings)
        if invented:
            return [], f"{', '.join(sorted(invented))} in no evidence sentence"
        # The subject's own article, where retrieval found it, is the authority on it: a sentence
        # elsewhere that names the subject backs a claim only when the own article is not there.
        own_only = any(r.own_article for r in readings)
        eligible, reason = [], "no evidence sentence to check against"
        for reading in readings:
            if allowed is not None and reading.sentence.item_id not in allowed:
                continue
            if own_only and not reading.own_article:
                continue
            why = self._why_not(claim, frame, reading)
            if why:
                reason = why if reason.startswith("no evidence") or not eligible else reason
                continue
            eligible.append(reading)
        if not eligible:
            return [], reason
        measure_question_similarities(eligible)
        similarities = self.verifier.similarities(claim.text, [r.sentence.text for r in eligible])
        crossed = self.cross_scores(frame.text, claim.text, eligible)
        pairs = [Pair(r, self._features(claim, frame, r, s, c)) for r, s, c in zip(eligible, similarities, crossed)]
        return pairs, ""

    def cross_scores(self, question: str, claim: str, readings: Sequence[Reading]) -> np.ndarray:
        """The cross-encoder's logit for each sentence stating ``claim`` (zeros without a cross-encoder)."""
        if self.cross_encoder is None:
            return np.zeros(len(readings))
        texts = [pair_texts(question, claim, r.sentence.title, r.sentence.text) for r in readings]
        return self.cross_encoder.score(texts[0][0], [second for _, second in texts])

    def _why_not(self, claim: Claim, frame: QuestionFrame, reading: Reading) -> str:
        if not (reading.mentions_subject or reading.own_article):
            return "no evidence sentence about the question's subject states it"
        if claim.added <= reading.title_words | frame.subject_words:
            return "the sentence gives the topic of its evidence back as the answer"
        if claim.answer_terms and not claim.answer_terms & self._held(reading):
            return "no evidence sentence about the subject holds the claim's answer"
        if not nearness(self.verifier, frame, reading, claim)[0]:
            return "the evidence sentence binds another name or number to the asked relation"
        return ""

    @staticmethod
    def _held(reading: Reading) -> set[str]:
        return reading.content | set(reading.words) | numbers(reading.sentence.text)

    def _features(self, claim: Claim, frame: QuestionFrame, reading: Reading, similarity: float,
                  crossed: float) -> np.ndarray:
        relations = frame.relation_words
        closeness = (sum(reading.relation_hits.get(r, (0.0, 0))[0] for r in relations) / len(relations)
                     if relations else 1.0)
        nearest, margin = nearness(self.verifier, frame, reading, claim)
        item = reading.sentence.item_id
        held = self._held(reading)
        bound = [self.verifier.number_bound(n, frame, reading) for n in claim.numbers if n in held]
        return np.asarray([
            len(claim.added & reading.content) / len(claim.added),
            len(claim.answer_terms & held) / len(claim.answer_terms) if claim.answer_terms else 1.0,
            sum(bound) / len(bound) if bound else 1.0,
            float(self.verifier.about_subject(frame, reading)),
            self.verifier.relation_share(frame, reading),
            closeness,
            nearest,
            margin / RIVAL_MARGIN_CAP,
            similarity,
            reading.question_similarity,
            float(reading.own_article),
            float(reading.sentence.is_fact),
            1.0 / (int(item[1:]) if item.startswith("F") else int(item)),
            crossed,
        ], dtype=np.float64)

    def check(self, text: str, frame: QuestionFrame, readings: Sequence[Reading],
              allowed: Iterable[str] | None = None) -> Verdict:
        """The evidence sentence most likely to state ``text``'s claim, and whether that is likely enough.

        Where several reach the threshold, the one cited holds most of the claim's words.
        """
        if self.model is None:
            raise CheckerModelError("no claim checker model is loaded")
        claim = read_claim(text, frame, self.verifier)
        pairs, reason = self.pairs(claim, frame, readings, set(allowed) if allowed is not None else None)
        if not pairs:
            return Verdict(False, reason)
        probabilities = self.model.probabilities(np.vstack([p.features for p in pairs]))
        best = int(np.argmax(probabilities))
        if probabilities[best] >= self.model.threshold:
            # Of the sentences that back the claim, the one cited is the one that holds most of it, so
            # what the user opens states the claim as fully as the evidence does.
            coverage = CHECK_FEATURES.index("coverage")
            backing = [i for i, p in enumerate(probabilities) if p >= self.model.threshold]
            best = max(backing, key=lambda i: (pairs[i].features[coverage], probabilities[i]))
        probability = float(probabilities[best])
        checks = dict(zip(CHECK_FEATURES, (round(float(v), 4) for v in pairs[best].features)))
        checks["probability"] = round(probability, 4)
        if not math.isfinite(probability) or probability < self.model.threshold:
            return Verdict(False, f"the checker gives {probability:.2f}, below its threshold {self.model.threshold:.2f}",
                           pairs[best].reading.sentence, probability, checks)
        return Verdict(True, "", pairs[best].reading.sentence, probability, checks)
