"""Which evidence sentence answers the question, and how sure to be of it: a reader fitted on dev questions.

Every evidence sentence about the question's subject that holds the kind of thing
asked for (a year for "when", a number in digits or words for "how many", a name for
"who", a reason for "why") is a candidate. Each is described by what the claim verifier and
retrieval already know of it, and by whether the LM's own draft, written over the
evidence, says what the sentence says:

- ``similarity``: cosine of the sentence and the question (all-MiniLM-L6-v2);
- ``similarity_with_title``: the same with the sentence's article title before it ("Apollo: He
  was born on Delos."), so a sentence that names its subject only by pronoun is read in context;
- ``similarity_without_subject``: the same with the subject's words taken out of both, so what is
  compared is what is asked of the subject, not the subject every candidate shares (the plain
  cosine where the question asks nothing beyond its subject: "What is anarchism?");
- ``relation_share`` and ``relation_closeness``: how much of the asked relation the
  sentence speaks of, by word vectors (``ClaimVerifier.relation_share``);
- ``own_article``: the sentence comes from the linked subject's own article;
- ``question_overlap``: share of the question's content words in the sentence and its title;
- ``question_numbers``: share of the question's own numbers ("in 1978", "the 88th ceremony") the
  sentence states (1.0 when it names none): a sentence without them speaks of another event;
- ``passage_rank`` and ``sentence_position``: where retrieval put its passage, and where
  the sentence stands in it (1/rank);
- ``entity_linked``: an entity of the question is in the knowledge base;
- ``draft_agreement``: share of what the draft adds to the question that the sentence holds;
- ``draft_cites``: the draft cites the sentence's passage (a model that cites well is believed).

Each also enters relative to the best candidate of the same question, so the model
reads "best of its question" as well as "good in itself". Two models over these are
fitted on the dev split only (``evaluation/reader_fit.py``):

- pointwise, a logistic regression: the probability that this sentence states the gold
  answer, judged on its own;
- listwise, a conditional logit with a "none of them" option (the no-answer option of
  SQuAD 2.0 readers): the probability that this candidate, rather than another or none,
  is the answer.

A candidate's probability is the lesser of the two: it is shown, as written, only when
both models are sure of it and that reaches the threshold chosen on dev for the trust
targets. Measured out of fold on dev (5 folds by article), the pointwise model alone
tells a question the knowledge base cannot answer from one it can better, the listwise
one a wrong candidate from the right one. With the threshold chosen on half of dev's
articles and judged on the other half (200 halvings, dev's first 330 questions), the
pointwise model alone gave accuracy 0.425 and wrong cited answers 0.032; needing both gave
0.478 and 0.011.

The two cosines beside the plain one were measured on all 497 dev questions, out of
fold: the average precision of the best candidate's probability for "the shown answer
is right" rose from 0.885 to 0.903 (article bootstrap of the difference, 95% interval
0.005 to 0.030), and held-out halves gave accuracy 0.414 against 0.386 at wrong cited
0.020 against 0.021; reading the plain cosine where the question asks nothing beyond its
subject then gave 0.416 at 0.019. Without the subject alone gave 0.406 held out, with the
title alone 0.404; the sentence before the candidate, read with it, gave nothing (0.375). The
weights, the threshold and the dev figures they came from live in ``qa/reader_model.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kgqa.errors import KgqaError
from kgqa.text import content_words, numbers, without_words
from qa.claims import META_WORDS, ClaimVerifier, QuestionFrame, answer_kind_missing, measure_question_similarities
from qa.sentences import markers_in, strip_markers

FEATURES = (
    "similarity",
    "similarity_with_title",
    "similarity_without_subject",
    "relation_share",
    "relation_closeness",
    "own_article",
    "question_overlap",
    "question_numbers",
    "passage_rank",
    "sentence_position",
    "entity_linked",
    "draft_agreement",
    "draft_cites",
)
MODEL_PATH = Path(__file__).with_name("reader_model.json")


class ReaderModelError(KgqaError):
    """The reader's model file is missing or does not fit this code's features."""


def listwise_probabilities(utilities: np.ndarray, null_utility: float) -> np.ndarray:
    """Each candidate's share of a softmax over the question's candidates and a "none of them" option."""
    from scipy.special import softmax

    return softmax(np.concatenate([[null_utility], utilities]))[1:]


@dataclass(frozen=True)
class ReaderModel:
    """Pointwise and listwise models over ``FEATURES`` and their values relative to the question's best candidate.

    Without ``listwise_weights`` (a model fitted before the listwise one existed) the pointwise
    probability alone is read, as that model's threshold was chosen.
    """

    weights: tuple[float, ...]  # pointwise: len(FEATURES) absolute, then len(FEATURES) relative
    intercept: float
    threshold: float  # least probability of the best candidate for it to be shown
    candidates: int  # candidates read per question (``candidates()``), chosen on dev with the weights
    features: tuple[str, ...] = FEATURES
    provenance: dict = field(default_factory=dict)
    listwise_weights: tuple[float, ...] = ()  # listwise utilities, same layout as ``weights``
    null_utility: float = 0.0  # the listwise utility of "none of them"

    def __post_init__(self):
        if (tuple(self.features) != FEATURES or len(self.weights) != 2 * len(FEATURES)
                or len(self.listwise_weights) not in (0, 2 * len(FEATURES))):
            raise ReaderModelError(
                f"the reader model was fitted on features {list(self.features)}, this code reads {list(FEATURES)}: "
                "refit it with `kgqa eval fit-reader`")

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """Per candidate row of ``matrix`` (one question's, ``describe()``): the lesser of the two models' probabilities."""
        from scipy.special import expit

        pointwise = expit(matrix @ np.asarray(self.weights, dtype=np.float64) + self.intercept)
        if not self.listwise_weights:
            return pointwise
        utilities = matrix @ np.asarray(self.listwise_weights, dtype=np.float64)
        return np.minimum(pointwise, listwise_probabilities(utilities, self.null_utility))

    @classmethod
    def load(cls, path: str | Path = MODEL_PATH) -> "ReaderModel":
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ReaderModelError(f"cannot read the reader model {path}: {exc}") from exc
        return cls(weights=tuple(raw["weights"]), intercept=float(raw["intercept"]), threshold=float(raw["threshold"]),
                   candidates=int(raw["candidates"]), features=tuple(raw["features"]), provenance=raw.get("provenance", {}),
                   listwise_weights=tuple(raw.get("listwise_weights", ())),
                   null_utility=float(raw.get("null_utility", 0.0)))

    def save(self, path: Path) -> None:
        record = asdict(self)
        record["features"] = list(self.features)
        record["weights"] = [round(w, 6) for w in self.weights]
        record["listwise_weights"] = [round(w, 6) for w in self.listwise_weights]
        Path(path).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


@dataclass
class Choice:
    """The candidate the reader ranks first, and the probability that it states the answer."""

    reading: object  # qa.claims.Reading
    probability: float
    features: dict[str, float]


def candidates(verifier: ClaimVerifier, frame: QuestionFrame, readings: Sequence, limit: int) -> list:
    """Passage sentences about the question's subject that hold the kind of answer asked for,
    the ``limit`` best by question similarity plus relation share."""
    eligible = [r for r in readings
                if not r.sentence.is_fact and verifier.about_subject(frame, r) and not answer_kind_missing(frame, r.sentence.text)]
    measure_question_similarities(eligible)
    eligible.sort(key=lambda r: r.question_similarity + verifier.relation_share(frame, r), reverse=True)
    return eligible[:limit]


def _positions(readings: Sequence) -> dict[int, int]:
    """Each passage sentence's index within its passage, by the reading's identity."""
    seen: dict[str, int] = {}
    found = {}
    for reading in readings:
        item = reading.sentence.item_id
        found[id(reading)] = seen.get(item, 0)
        seen[item] = found[id(reading)] + 1
    return found


def draft_additions(frame: QuestionFrame, drafted: Sequence[str]) -> list[set[str]]:
    """What each drafted sentence adds to the question: its content words the question lacks."""
    added = [set(content_words(strip_markers(s))) - frame.words - META_WORDS for s in drafted]
    return [a for a in added if a]


def _other_similarities(verifier: ClaimVerifier, frame: QuestionFrame,
                        chosen: Sequence) -> tuple[list[float], list[float]]:
    """Per candidate: the question's cosine with the title before the sentence, and without the subject's words."""
    with_title = verifier.similarities(frame.text, [f"{r.sentence.title}: {r.sentence.text}" for r in chosen])
    asked = without_words(frame.text, frame.subject_words) if frame.subject_words else ""
    if not content_words(asked):  # no subject, or nothing asked beyond it ("What is anarchism?"): the plain cosine
        return with_title, [r.question_similarity for r in chosen]
    return with_title, verifier.similarities(asked, [without_words(r.sentence.text, frame.subject_words)
                                                     for r in chosen])


def describe(verifier: ClaimVerifier, frame: QuestionFrame, readings: Sequence, chosen: Sequence,
             drafted: Sequence[str]) -> np.ndarray:
    """The feature matrix of ``chosen`` (rows in order): ``FEATURES``, then each minus its best over ``chosen``."""
    if not chosen:
        return np.zeros((0, 2 * len(FEATURES)))
    positions = _positions(readings)
    additions = draft_additions(frame, drafted)
    cited = {m for s in drafted for m in markers_in(s)}
    with_title, without_subject = _other_similarities(verifier, frame, chosen)
    rows = []
    for reading, titled, unsubjected in zip(chosen, with_title, without_subject):
        sentence = reading.sentence
        held = reading.content | reading.title_words
        relations = frame.relation_words
        closeness = (sum(reading.relation_hits.get(r, (0.0, 0))[0] for r in relations) / len(relations)
                     if relations else 1.0)
        rows.append([
            reading.question_similarity,
            titled,
            unsubjected,
            verifier.relation_share(frame, reading),
            closeness,
            float(reading.own_article),
            len(frame.words & held) / max(1, len(frame.words)),
            len(frame.numbers & numbers(sentence.text)) / len(frame.numbers) if frame.numbers else 1.0,
            1.0 / int(sentence.item_id),
            1.0 / (positions[id(reading)] + 1),
            float(bool(frame.subject_titles)),
            max((len(added & held) / len(added) for added in additions), default=0.0),
            float(sentence.item_id in cited),
        ])
    matrix = np.asarray(rows, dtype=np.float64)
    return np.hstack([matrix, matrix - matrix.max(axis=0)])


def read_candidates(verifier: ClaimVerifier, frame: QuestionFrame, readings: Sequence, limit: int,
                    drafted: Sequence[str]) -> tuple[list, np.ndarray]:
    """The ``limit`` candidates (``candidates()``) and their feature matrix (``describe()``)."""
    chosen = candidates(verifier, frame, readings, limit)
    return chosen, describe(verifier, frame, readings, chosen, drafted)


class AnswerReader:
    """Picks the evidence sentence that answers, with the model's probability that it does."""

    def __init__(self, model: ReaderModel):
        self.model = model

    def choose(self, verifier: ClaimVerifier, frame: QuestionFrame, readings: Sequence,
               drafted: Sequence[str]) -> Choice | None:
        chosen, matrix = read_candidates(verifier, frame, readings, self.model.candidates, drafted)
        if not chosen:
            return None
        probabilities = self.model.probabilities(matrix)
        best = int(np.argmax(probabilities))
        probability = float(probabilities[best])
        if not math.isfinite(probability):
            return None
        return Choice(chosen[best], probability, dict(zip(FEATURES, (round(float(v), 4) for v in matrix[best][: len(FEATURES)]))))
