"""The reader: score the sentences of retrieved passages, quote the best ones verbatim, or abstain."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rag.config import ReaderWeights
from rag.index import Index
from rag.keywords import bigrams, is_chinese
from rag.retrieve import Hit

NOT_FOUND = "这些文章没有回答这个问题。(The articles do not answer this.)"
FEATURES = ("dense", "overlap", "passage", "predicate_overlap")
MAX_ENTITY_TITLE_CHARS = 12  # a title this short names an entity; a longer one is a headline and is not subtracted


@dataclass(frozen=True)
class Citation:
    """A source article."""

    title: str
    authors: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class Evidence:
    """An answer sentence, verbatim, with where it comes from."""

    text: str
    score: float
    passage_id: str
    article_title: str
    source: str


@dataclass(frozen=True)
class RetrievedPassage:
    """A supporting passage with its retrieval scores and article."""

    id: str
    text: str
    score: float
    dense_score: float
    keyword_score: float
    section: str
    article: Citation


@dataclass(frozen=True)
class Answer:
    """What ask() returns: the quoted answer (or an abstention), its evidence, passages and citations."""

    question: str
    answer: str
    abstained: bool
    confidence: float  # the best sentence's score; the reader abstains below ReaderWeights.threshold
    evidence: tuple[Evidence, ...]
    passages: tuple[RetrievedPassage, ...]
    citations: tuple[Citation, ...]
    timings_ms: dict[str, float]

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of the answer."""
        return asdict(self)


def _share(wanted: set[str], found: set[str]) -> float:
    """The share of the wanted bigrams that are found (0 when none are wanted)."""
    return len(wanted & found) / len(wanted) if wanted else 0.0


def sentence_features(index: Index, hits: list[Hit], query_vector: np.ndarray, question: str) -> tuple[np.ndarray, list[int]]:
    """Feature rows (FEATURES order) for every sentence of the retrieved passages, and the sentence rows."""
    rows = [s for hit in hits for s in index.passage_sentences[hit.row]]
    if not rows:
        return np.zeros((0, len(FEATURES)), dtype=np.float32), []
    dense = index.sentence_vectors[rows] @ query_vector.ravel()
    question_bigrams = bigrams(question)
    passage_score = {hit.row: hit.dense_score for hit in hits}
    # A short article title names the question's entity; the other question bigrams carry what is asked about it.
    predicate = {}
    for hit in hits:
        title = index.articles[index.passages[hit.row].article_id].title
        predicate[hit.row] = question_bigrams - (bigrams(title) if len(title) <= MAX_ENTITY_TITLE_CHARS else set())
    features = []
    for row, cosine in zip(rows, dense):
        sentence = index.sentences[row]
        sentence_bigrams = bigrams(sentence.text)
        features.append((
            cosine,
            _share(question_bigrams, sentence_bigrams),
            passage_score[sentence.passage],
            _share(predicate[sentence.passage], sentence_bigrams),
        ))
    return np.asarray(features, dtype=np.float32), rows


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def choose_sentences(index: Index, scores: np.ndarray, rows: list[int], weights: ReaderWeights) -> list[tuple[int, float]]:
    """The best one to max_sentences sentences, best first, near-duplicates dropped."""
    chosen: list[tuple[int, float]] = []
    seen: list[set[str]] = []
    for i in np.argsort(-scores, kind="stable"):
        if chosen and (len(chosen) >= weights.max_sentences or scores[i] < chosen[0][1] - weights.margin):
            break
        grams = bigrams(index.sentences[rows[i]].text) or {index.sentences[rows[i]].text}
        if any(_jaccard(grams, g) > weights.duplicate_overlap for g in seen):
            continue
        chosen.append((rows[i], float(scores[i])))
        seen.append(grams)
    return chosen


def feature_weights(weights: ReaderWeights) -> np.ndarray:
    """The weights as a vector in FEATURES order: a sentence's score is its feature row times this."""
    return np.array([getattr(weights, name) for name in FEATURES], dtype=np.float32)


def read(index: Index, hits: list[Hit], query_vector: np.ndarray, question: str, weights: ReaderWeights) -> tuple[list[tuple[int, float]], bool]:
    """Chosen (sentence row, score) pairs and whether to abstain because the best evidence is too weak."""
    features, rows = sentence_features(index, hits, query_vector, question)
    if not rows:
        return [], True
    scores = features @ feature_weights(weights)
    chosen = choose_sentences(index, scores, rows, weights)
    threshold = weights.threshold if is_chinese(question) else weights.threshold_cross_lingual
    return chosen, chosen[0][1] < threshold


def _citation(index: Index, article_id: str) -> Citation:
    article = index.articles[article_id]
    return Citation(article.title, article.authors, article.source)


def _evidence(index: Index, row: int, score: float) -> Evidence:
    passage = index.passages[index.sentences[row].passage]
    return Evidence(index.sentences[row].text, score, passage.id, index.articles[passage.article_id].title, passage.source)


def _retrieved(index: Index, hit: Hit) -> RetrievedPassage:
    p = index.passages[hit.row]
    return RetrievedPassage(p.id, p.text, hit.score, hit.dense_score, hit.keyword_score, p.section, _citation(index, p.article_id))


def compose(index: Index, question: str, hits: list[Hit], chosen: list[tuple[int, float]], abstained: bool, timings_ms: dict[str, float]) -> Answer:
    """The Answer record: quoted sentences (none when abstaining), passages best first, distinct cited articles."""
    evidence = () if abstained else tuple(_evidence(index, row, score) for row, score in chosen)
    cited = dict.fromkeys(index.passages[index.sentences[row].passage].article_id for row, _ in chosen) if evidence else {}
    return Answer(
        question=question,
        answer="".join(e.text for e in evidence),
        abstained=abstained,
        confidence=chosen[0][1] if chosen else 0.0,
        evidence=evidence,
        passages=tuple(_retrieved(index, h) for h in hits),
        citations=tuple(_citation(index, a) for a in cited),
        timings_ms=timings_ms,
    )
