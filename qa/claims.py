"""Claims checked against one evidence sentence, not a bag of words.

A sentence of an answer is shown only when **one** evidence sentence (or one
infobox fact) states what it claims about the question: the question's subject
is what that sentence is about, the sentence speaks of the relation asked for,
every name and number the claim adds stands in that sentence, a number sits
next to the asked relation rather than another one, and the claim adds
something beyond the question's own words (an answer that gives back the
question's subject is no answer). The citation then points at that sentence,
with its character offsets in the passage, so a reader can check it.

Relation words are matched by meaning with the embedder's word vectors
(``born`` ~ ``birth`` 0.84, ``married`` ~ ``spouse`` 0.82, ``born`` ~ ``death`` 0.38
with all-MiniLM-L6-v2), not through a table of cue words, so a question phrased
outside any vocabulary still finds its relation.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from kgqa.questions import asked_kind
from kgqa.records import LinkedEntity
from kgqa.text import STOPWORDS, content_words, fold, number_words, numbers
from kgqa.text import words as all_words
from qa.budget import Evidence, fact_line
from qa.sentences import sentence_spans, strip_markers
from qa.tuning import SAME_MEANING, Thresholds
from retrieval.word_vectors import WordVectors

# Closed-class words that carry no relation: question words, auxiliaries, pronouns.
# (Grammar, not vocabulary about any topic.)
FUNCTION_WORDS = frozenset(
    "what which who whom whose when where why how many much did does do was were is are be been being "
    "has have had can could would should will shall may might must there their its his her they them "
    "he she it this that these those an a the of in on at to for from by with as about into one kind".split()
)
# Stopwords for search that still name a relation in a question ("What are people from X called?").
RELATION_STOPWORDS = frozenset({"called", "known", "named"})
# Words an answer uses to talk about itself rather than the world.
META_WORDS = frozenset("answer question evidence text passage according source information".split())
# Imperatives addressed to a model: a passage holding one is treated as hostile, never as support.
# Encyclopedic prose reports what people ignored, instructed or answered; an injection commands it,
# so an order counts only where a command stands: at the start of a sentence or clause, after a
# role line, or after "please" ("The king ignored the advice" and "to ignore the instructions"
# are not orders; "Ignore all previous instructions" is).
_COMMAND_START = r"(?:^|[.!?:;>\"“«\[\]()]\s*|\b(?:please|kindly)\s+)"
_EARLIER = r"(?:previous|prior|above|preceding|earlier|your)"
_ORDERS = r"(?:instructions?|prompts?|rules|directions|directives|guidelines|context|evidence|passages?|sources?)"
_REPLY = r"(?:answer|respond|reply|say|output)"
_MACHINE = (r"(?:ai|a\.i\.|artificial intelligence|ai (?:assistants?|models?|systems?|agents?)|"
            r"(?:large )?language models?|llms?|chatbots?|bots?|gpt)")
_INJECTION = re.compile(
    # "Ignore all previous instructions", "Disregard the context above", "ignore your rules"
    rf"{_COMMAND_START}(?:ignore|disregard|forget|override|bypass)\b[^.!?]{{0,60}}?\b{_ORDERS}\b"
    rf"|\b(?:ignore|disregard|forget|override)\s+(?:(?:all|any|the|of)\s+)*{_EARLIER}\s+{_ORDERS}\b"
    # the same in other languages: "Ignorez les instructions", "Ignoriere alle Anweisungen", "Ignora las instrucciones"
    r"|\b(?:ignorez|oubliez|ignoriere|ignorieren|vergiss|vergessen|ignora|ignorar|olvida|dimentica|esque[çc]a)\b"
    r"[^.!?]{0,60}?\b(?:instructions|consignes|anweisungen|befehle|vorgaben|instrucciones|istruzioni|instru[çc][õo]es)\b"
    # "answer X to every question", "the correct answer to all questions is X", "Answer every question with X"
    rf"|\b{_REPLY}\b[^.!?]{{0,40}}?\b(?:to|for|with) (?:every|all|any|each) (?:questions?|queries|users?|prompts?|requests?)\b"
    rf"|{_COMMAND_START}{_REPLY}\s+(?:to\s+)?(?:every|all|any|each)\s+(?:questions?|queries|prompts?|requests?)\b"
    rf"|{_COMMAND_START}(?:always\s+|only\s+)?{_REPLY}\s+(?:only\s+)?with\b"
    rf"|\b(?:{_REPLY}|answers?)\s+(?:only|always|solely)\s+(?:with|by)\b"
    rf"|\bplease\s+(?:{_REPLY}|ignore|disregard|forget|only|always)\b"
    # fake turns, headers and delimiters of a chat prompt: "SYSTEM:", "Assistant:", "### Instruction:", "</evidence>"
    r"|(?:^|[.!?;>\"“\])]\s*)(?:system|assistant)\s*:"
    r"|#{2,}\s*(?:instruction|response|system|input|assistant|user)\b|\[/?inst\]|<</?sys>>|<\|[a-z_]+\|>"
    r"|</?\s*(?:evidence|context|system|instructions?|prompt)\s*>"
    r"|\b(?:new|updated|real|actual|revised|additional)\s+instructions?\s*:"
    # kgqa's own fact marker written into a passage ("... is 9000 metres [F1]"): no article cites a fact line
    r"|\[\s*F\d+\s*\]"
    # a planted exchange for the model to copy: "Question: ... Answer: ..."
    r"|\bquestion\s*:[^\n]{0,300}?\banswer\s*:"
    # words addressed to a model: "If you are a language model", "Note to AI assistants", "as an AI"
    rf"|\b(?:if|when|since|because)\s+you\s+are\s+(?:an?\s+)?{_MACHINE}\b"
    r"|\b(?:notes?|messages?|instructions?|reminders?|notices?|warnings?|hints?|text)\s+(?:to|for)\s+"
    rf"(?:all\s+|any\s+|the\s+)?{_MACHINE}\s*[:,\-–—]"
    rf"|\b(?:dear|hey|hello)\s+{_MACHINE}\b|\bas an? (?:ai|language model|large language model|llm)\s*(?:,|you\b|i\b)",
    re.IGNORECASE,
)
# The override spelled with its letters spaced out or hyphenated ("I g n o r e  a l l  p r e v i o u s ..."),
# read on the text's letters alone.
_SQUEEZED_INJECTION = re.compile(
    r"(?:ignore|disregard|forget|override)(?:all|any|the|your|of)*(?:previous|prior|above|preceding|earlier)"
    r"(?:instructions?|prompts?|rules|context|messages)"
)
# Letters of other scripts that pass for Latin ones ("Ignоre" with a Cyrillic о); NFKC folds the
# full-width and mathematical forms, and invisible characters (soft hyphen, zero-width) are dropped.
_LOOKALIKES = str.maketrans(
    "аеорсухіјѕԁһӏАВЕКМНОРСТХІЈЅοαεινρτκυΑΒΕΗΙΚΜΝΟΡΤΥΧ",
    "aeopcyxijsdhlABEKMHOPCTXIJSoaeivptkuABEHIKMNOPTYX",
)
_INVISIBLE = re.compile(r"[\u00ad\u180e\u200b-\u200f\u2060-\u2064\ufeff]")
_NOT_A_LETTER = re.compile(r"[^a-z]+")
MONTHS = frozenset(
    "january february march april may june july august september october november december "
    "jan feb mar apr jun jul aug sep sept oct nov dec bc bce ad ce".split()
)
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+(?:['’][^\W\d_]+)*", re.UNICODE)
_NAME = re.compile(r"\b[A-Z][\w'’-]*(?:\s+(?:of|the|de|von|van|da|del|la|le)?\s*[A-Z][\w'’-]*)*")


def tokens_of(text: str) -> list[str]:
    """Folded words and numbers in order; numbers lose thousands separators as ``numbers()`` does."""
    return [t.replace(",", "") if t[0].isdigit() else fold(t) for t in _TOKEN.findall(text)]


def looks_injected(text: str) -> bool:
    """Whether ``text`` addresses instructions to a model ("ignore all previous instructions …").

    Read after undoing the usual disguises: look-alike letters of other scripts,
    full-width forms, invisible characters, and letters spaced out or hyphenated.
    """
    plain = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text)).translate(_LOOKALIKES)
    return bool(_INJECTION.search(plain) or _SQUEEZED_INJECTION.search(_NOT_A_LETTER.sub("", plain.lower())))


@dataclass(frozen=True)
class EvidenceSentence:
    """One sentence of the evidence: where it stands, so a citation can point at it."""

    item_id: str  # "F1".. for a fact, "1".. for a passage, as numbered in the prompt
    title: str  # the article it comes from
    text: str
    start: int = 0  # character offsets into the passage text (the fact line for a fact)
    end: int = 0
    passage_id: str | None = None
    hostile: bool = False

    @property
    def is_fact(self) -> bool:
        return self.item_id.startswith("F")


def evidence_sentences(evidence: Evidence) -> list[EvidenceSentence]:
    """Every fact as one sentence, then every passage cut into sentences, in citation order."""
    found = []
    for number, fact in enumerate(evidence.facts, start=1):
        line = fact_line(fact)
        found.append(EvidenceSentence(f"F{number}", fact.subject, line, 0, len(line), hostile=looks_injected(line)))
    for number, passage in enumerate(evidence.passages, start=1):
        hostile = looks_injected(passage.text)
        for start, end in sentence_spans(passage.text):
            found.append(
                EvidenceSentence(str(number), passage.title, passage.text[start:end], start, end,
                                 passage.passage_id, hostile)
            )
    return found


def is_own_article(title: str, subjects: Collection[str]) -> bool:
    """Whether an article is the subject's own: its title, or one of the articles Wikipedia splits off it
    ("Politics of Angola", "Economy of Angola" for Angola)."""
    return title in subjects or any(title.endswith(f" of {subject}") for subject in subjects)


def names(text: str) -> set[str]:
    """Folded words of capitalised names in ``text``, without function words ("The", "He")."""
    found = set()
    for match in _NAME.finditer(text):
        for word in match.group().split():
            folded = fold(word.rstrip("'’"))  # "Achilles'" is Achilles
            if folded not in STOPWORDS and folded not in FUNCTION_WORDS:
                found.add(folded)
    return found


# Words with which an explanation is given: a "why" question is answered only by a sentence holding one.
REASON_WORDS = frozenset(
    "because since due owing cause caused causes reason reasons result resulted therefore thus so hence "
    "order allow allows allowed lead led".split()
)


@dataclass(frozen=True)
class QuestionFrame:
    """What a question asks: about whom (its linked entities), which relation, and what kind of answer."""

    text: str
    words: frozenset[str]  # folded content words of the question
    subject_titles: frozenset[str]
    subject_words: frozenset[str]
    relation_words: tuple[str, ...]
    answer_type: str  # date | number | name | place | other
    numbers: frozenset[str]
    number_words: frozenset[str]  # counts the question spells out (``kgqa.text.number_words``)


def spells_new_count(frame: QuestionFrame, text: str) -> bool:
    """Whether ``text`` spells out a count the question does not ("only five students")."""
    return bool(number_words(text) - frame.number_words)


def answer_kind_missing(frame: QuestionFrame, text: str, *, reason_word: bool = True) -> str:
    """Why ``text`` gives no answer of the kind ``frame`` asks for, beyond the question's own words ("" when it does).

    A year or another new number for "when", a count in digits or words for "how many",
    a name that is no month or era for "who" and "where" (a where-question never gets a
    date), a word of explanation for "why" (unless ``reason_word`` is False: a writer may give
    a reason without one), any new word otherwise.
    """
    kind = frame.answer_type
    added = numbers(text) - frame.numbers
    if kind == "reason" and reason_word and not REASON_WORDS & set(all_words(text)):
        return "the question asks why and the sentence gives no reason"
    if kind == "date" and not any(n.isdigit() and len(n) <= 4 for n in added):
        return "the question asks when and the sentence gives no date"
    if kind == "number" and not added and not spells_new_count(frame, text):
        return "the question asks how many and the sentence gives no number"
    if kind in ("name", "place") and not names(text) - frame.words - frame.subject_words - MONTHS:
        return f"the question asks {'who' if kind == 'name' else 'where'} and the sentence names no one and nowhere new"
    if not set(content_words(text)) - frame.words:
        return "the sentence adds nothing to the question"
    return ""


def frame_question(question: str, entities: Sequence[LinkedEntity] = ()) -> QuestionFrame:
    """The frame of ``question`` given the entities retrieval linked in it."""
    words = frozenset(content_words(question))
    subject_words: set[str] = set()
    for entity in entities:
        subject_words |= set(content_words(entity.title)) | set(content_words(entity.mention))
    if not entities:  # nothing linked: the question's own names are what it is about
        subject_words = names(question) & words
    # The noun that names the kind asked for ("In what year …") is answered by the answer itself, not a relation.
    asked = asked_kind(question)
    relation = tuple(dict.fromkeys(
        w for w in all_words(question)
        if len(w) > 1 and w not in subject_words and w not in FUNCTION_WORDS and w != asked.type_noun
        and (w not in STOPWORDS or w in RELATION_STOPWORDS)
    ))
    return QuestionFrame(
        text=question, words=words, subject_titles=frozenset(e.title for e in entities),
        subject_words=frozenset(subject_words), relation_words=relation,
        answer_type=asked.kind, numbers=frozenset(numbers(question)),
        number_words=frozenset(number_words(question)),
    )


@dataclass
class Verdict:
    """Whether a claim stands on one evidence sentence, which one, and why not when it does not."""

    supported: bool
    reason: str
    sentence: EvidenceSentence | None = None
    score: float = 0.0
    checks: dict = field(default_factory=dict)
    also: tuple[EvidenceSentence, ...] = ()  # a claim that needs two hops: the other hop's sentence


class QuestionSimilarities:
    """The embedder's cosine of one question with its evidence sentences, each computed when first asked for.

    A claim is read against the few sentences that may back it, so the answer's first
    sentence never waits for the cosine of every retrieved sentence; ``measure`` computes
    several at once (the encoder runs them in parallel).
    """

    def __init__(self, verifier: "ClaimVerifier", question: str):
        self._verifier = verifier
        self._question = question
        self._known: dict[int, float] = {}

    def measure(self, readings: Sequence["Reading"]) -> None:
        missing = list({id(r): r for r in readings if id(r) not in self._known}.values())
        if missing:
            found = self._verifier.similarities(self._question, [r.sentence.text for r in missing])
            self._known.update((id(r), s) for r, s in zip(missing, found))

    def of(self, reading: "Reading") -> float:
        if id(reading) not in self._known:
            self.measure([reading])
        return self._known[id(reading)]


def measure_question_similarities(readings: Sequence["Reading"]) -> None:
    """Compute the question's cosine with each of ``readings`` in one go (one question's readings share them)."""
    if readings:
        readings[0].similarities.measure(readings)


@dataclass
class Reading:
    """One evidence sentence as the verifier reads it (computed once per question)."""

    sentence: EvidenceSentence
    words: list[str]  # folded tokens in order (numbers kept)
    content: set[str]
    mentions_subject: bool  # its own article, or a sentence naming the subject
    relation_hits: dict[str, tuple[float, int]]  # relation word -> (similarity, token position)
    title_words: set[str]
    similarities: QuestionSimilarities = field(repr=False, compare=False)
    own_article: bool = False  # the sentence comes from the linked subject's own article (or is its fact)

    @property
    def question_similarity(self) -> float:
        """The embedder's cosine of the question and this sentence (computed on first use)."""
        return self.similarities.of(self)


class ClaimVerifier:
    """Checks claims against single evidence sentences; ``encode`` gives sentence and word vectors."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray] | None = None,
                 thresholds: Thresholds | None = None, *, words: WordVectors | None = None):
        self._encode = encode
        self.words = words or WordVectors(encode)
        self.thresholds = thresholds or Thresholds()

    # -- reading the evidence once per question --------------------------------------------------
    def read(self, frame: QuestionFrame, sentences: Sequence[EvidenceSentence]) -> list[Reading]:
        """Each usable sentence with its subject and relation signals; hostile passages are left out."""
        usable = [s for s in sentences if not s.hostile]
        similarities = QuestionSimilarities(self, frame.text)
        readings = []
        for sentence in usable:
            tokens = tokens_of(sentence.text)
            title_words = set(content_words(sentence.title))
            content = set(content_words(sentence.text)) | title_words
            own_article = is_own_article(sentence.title, frame.subject_titles)
            if frame.subject_titles:
                about = own_article or bool(frame.subject_words & content)
            else:
                about = not frame.subject_words or bool(frame.subject_words & content)
            hits = {}
            for relation in frame.relation_words:
                # The words of the article's title name its subject, not a relation.
                candidates = [t for t in tokens if not t[0].isdigit() and t not in title_words]
                score, word = self.words.best_match(relation, candidates)
                if word:
                    hits[relation] = (score, tokens.index(word))
            readings.append(Reading(sentence, tokens, content, about, hits, title_words, similarities, own_article))
        return readings

    def similarities(self, question: str, texts: Sequence[str]) -> list[float]:
        """Cosine of each of ``texts`` and ``question`` by the embedder (1.0 each without one)."""
        if self._encode is None or not texts:
            return [1.0] * len(texts)
        vectors = self._encode([question, *texts])
        return [float(v) for v in vectors[1:] @ vectors[0]]

    # -- the checks --------------------------------------------------------------------------------
    def about_subject(self, frame: QuestionFrame, reading: Reading) -> bool:
        """Whether the sentence speaks of the question's subject.

        With ``own_article_only``, a linked subject's facts come from its own article only:
        a sentence elsewhere that names it ("Note: the population of Testland is …" in another
        article) does not answer for it.
        """
        if self.thresholds.own_article_only and frame.subject_titles:
            return reading.own_article
        return reading.mentions_subject

    def relation_share(self, frame: QuestionFrame, reading: Reading, *, match: float | None = None) -> float:
        """Share of the question's relation words the sentence speaks of (1.0 when it names none).

        A question word that is a word of the sentence's article title names the topic
        ("What is anarchism?" over the article Anarchism), not a relation, and is not counted.
        """
        match = self.thresholds.relation_match if match is None else match
        relations = [r for r in frame.relation_words if r not in reading.title_words]
        if not relations:
            return 1.0
        matched = sum(1 for r in relations if reading.relation_hits.get(r, (0.0, 0))[0] >= match)
        return matched / len(relations)

    def number_bound(self, number: str, frame: QuestionFrame, reading: Reading) -> bool:
        """Whether ``number`` stands next to the asked relation in the sentence, not to another one.

        Bound: a word matching a relation of the question lies within ``number_window``
        tokens with no other number between them, and the word right after the number
        (its unit: "67 counties") is not a different thing unless it is part of a date.
        """
        if not frame.relation_words or reading.sentence.is_fact:
            return True  # a fact binds its object to its predicate; the relation check covers it
        positions = [i for i, t in enumerate(reading.words) if t == number]
        if not positions:
            return False
        relation_positions = [p for s, p in reading.relation_hits.values() if s >= self.thresholds.relation_match]
        for position in positions:
            following = next((t for t in reading.words[position + 1 : position + 3] if t not in FUNCTION_WORDS), "")
            if following and not following[0].isdigit() and following not in MONTHS:
                unit_score, _ = self.words.best_match(following, frame.relation_words)
                if unit_score < self.thresholds.relation_match and following not in {"year", "years", "people", "percent"}:
                    continue  # "67 counties": the number counts something else
            for rel in relation_positions:
                low, high = sorted((position, rel))
                between = reading.words[low + 1 : high]
                if high - low <= self.thresholds.number_window and not any(t[0].isdigit() for t in between if t != number):
                    return True
        return False

    def verify(self, claim: str, frame: QuestionFrame, readings: Sequence[Reading],
               allowed: Iterable[str] | None = None) -> Verdict:
        """The best single evidence sentence that supports ``claim``, or why none does.

        ``allowed`` restricts the sentences to some evidence ids (markers the model wrote).
        """
        text = strip_markers(claim)
        claim_words = set(content_words(text))
        new = claim_words - frame.words - META_WORDS
        # A word that means what a question word means ("world" for "Earth") adds nothing either.
        new = {w for w in new if w[0].isdigit() or self.words.best_match(w, frame.words)[0] < SAME_MEANING}
        if not new:
            return Verdict(False, "the sentence only restates the question")
        if new <= frame.subject_words:
            return Verdict(False, "the sentence gives the question's subject back as its answer")
        missing_kind = answer_kind_missing(frame, text)
        if missing_kind:
            return Verdict(False, missing_kind)
        claim_names = names(text) - frame.words - META_WORDS
        claim_numbers = numbers(text) - frame.numbers
        allowed = set(allowed) if allowed is not None else None
        best: Verdict | None = None
        for reading in readings:
            if allowed is not None and reading.sentence.item_id not in allowed:
                continue
            verdict = self._check(text, new, claim_names, claim_numbers, frame, reading)
            if verdict.supported and (best is None or not best.supported or verdict.score > best.score):
                best = verdict
            elif best is None or (not best.supported and verdict.score > best.score):
                best = verdict
        return best or Verdict(False, "no evidence sentence to check against")

    def _check(self, text, new, claim_names, claim_numbers, frame: QuestionFrame, reading: Reading) -> Verdict:
        sentence = reading.sentence
        checks = {
            "about_subject": self.about_subject(frame, reading),
            "relation_share": round(self.relation_share(frame, reading), 3),
            "question_similarity": round(reading.question_similarity, 3),
        }
        coverage = len(new & reading.content) / len(new)
        checks["coverage"] = round(coverage, 3)
        score = coverage + checks["relation_share"] + reading.question_similarity
        if not self.about_subject(frame, reading):
            return Verdict(False, "the sentence is about another entity than the question's", sentence, score, checks)
        if new <= reading.title_words | frame.subject_words:
            return Verdict(False, "the sentence gives the topic of its evidence back as the answer", sentence, score, checks)
        missing_names = claim_names - reading.content
        if missing_names:
            return Verdict(False, f"{', '.join(sorted(missing_names))} not in the evidence sentence", sentence, score, checks)
        missing_numbers = claim_numbers - set(reading.words) - numbers(sentence.text)
        if missing_numbers:
            return Verdict(False, f"{', '.join(sorted(missing_numbers))} not in the evidence sentence", sentence, score, checks)
        if coverage < self.thresholds.claim_coverage:
            return Verdict(False, f"the evidence sentence holds {coverage:.0%} of what the sentence adds", sentence, score, checks)
        if frame.relation_words and checks["relation_share"] < self.thresholds.relation_share:
            return Verdict(False, "the evidence sentence does not speak of the relation asked about", sentence, score, checks)
        if not frame.subject_titles and reading.question_similarity < self.thresholds.question_similarity:
            return Verdict(False, "the evidence sentence is not about what the question asks", sentence, score, checks)
        unbound = [n for n in claim_numbers if not self.number_bound(n, frame, reading)]
        if unbound:
            return Verdict(False, f"{', '.join(sorted(unbound))} belongs to another relation in its sentence", sentence, score, checks)
        return Verdict(True, "", sentence, score, checks)
