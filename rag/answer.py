"""The reader: score the sentences of retrieved passages with learned weights, quote the best verbatim, or decline."""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rag.config import ReaderSettings
from rag.cross_encoder import CrossEncoder, cross_scores
from rag.features import SENTENCE_FEATURES, sentence_features
from rag.index import Index
from rag.keywords import bigrams, is_chinese
from rag.model import ModelError
from rag.retrieve import Hit
from rag.translate import chinese_words

NOT_FOUND = "这些文章没有回答这个问题。(The articles do not answer this.)"
CLAUSE_BREAK = re.compile(r"[，,；;：:]")


@dataclass(frozen=True)
class Citation:
    """A source article."""

    title: str
    authors: tuple[str, ...]
    source: str
    article_id: str  # "<file stem>#<n>": one file may hold several articles
    info_source: str = ""  # 信息来源 where the document gives it
    published: str = ""  # 发布日期 where the document gives it
    pages: tuple[int, ...] = ()  # pages of a PDF the answer quotes


@dataclass(frozen=True)
class Evidence:
    """An answer sentence, verbatim, with where it comes from."""

    text: str
    score: float  # the reader's logit that this sentence holds the answer
    passage_id: str
    article_title: str
    source: str
    article_id: str
    pages: tuple[int, ...] = ()  # pages of a PDF it is printed on


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
    pages: tuple[int, ...] = ()  # pages of a PDF it is printed on


@dataclass(frozen=True)
class Answer:
    """What ask() returns: the quoted answer (or an abstention), its evidence, passages and citations."""

    question: str
    answer: str
    abstained: bool
    confidence: float  # the reader's probability that the quote answers the question; it declines below a threshold
    evidence: tuple[Evidence, ...]
    passages: tuple[RetrievedPassage, ...]
    citations: tuple[Citation, ...]
    timings_ms: dict[str, float]
    notice: str = ""  # set when the index is out of date and could not be rebuilt

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of the answer."""
        return asdict(self)


@dataclass(frozen=True)
class LinearModel:
    """A logistic regression over named features: logit = ((x - mean) / scale) · coef + intercept."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def logits(self, rows: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
        """Logits of feature rows whose columns are `names` (a superset of this model's features)."""
        x = rows[:, [names.index(f) for f in self.features]]
        return ((x - self.mean) / self.scale) @ self.coef + self.intercept


@dataclass(frozen=True)
class CrossReader:
    """The second stage: the first stage's best sentences re-scored with the cross-encoder's logits, and the decision again."""

    sentence: LinearModel  # over CROSS_SENTENCE_FEATURES
    decision: LinearModel  # over CROSS_DECISION_FEATURES
    threshold: float  # P(answered) below which it declines


@dataclass(frozen=True)
class ReaderModel:
    """The learned reader: which sentence answers, and whether any does; one variant per kind of question."""

    sentence: dict[str, LinearModel]  # by LANGUAGES
    decision: dict[str, LinearModel]
    threshold: dict[str, float]  # P(answered) below which the reader declines
    about: dict  # what it was fitted on, for the record
    cross: CrossReader | None = None  # for questions with Chinese, when fitted with a cross-encoder


LANGUAGES = ("monolingual", "cross_lingual")  # a question with Chinese, and one without (no shared words possible)
DECISION_FEATURES = (
    "best", "margin", "dense", "passage", "passage_z", "predicate_overlap", "idf_overlap", "key_missing",
    "least_key_missing", "number_missing", "type_missing", "type_found_near",
)
CROSS_LINGUAL_DECISION_FEATURES = ("best", "margin", "passage_z", "idf_overlap", "number_missing", "type_missing", "type_found_near")
CROSS_SENTENCE_FEATURES = ("first", "cross")  # the first stage's logit, the cross-encoder's
CROSS_DECISION_FEATURES = ("decision", "cross_best", "cross_margin")  # the first stage's decision logit, the best cross logits


def linear_model(record: dict) -> LinearModel:
    """A LinearModel from its JSON record."""
    return LinearModel(tuple(record["features"]), *(np.asarray(record[k], dtype=np.float32) for k in ("mean", "scale", "coef")),
                       float(record["intercept"]))


def reader_model(data: dict) -> ReaderModel:
    """A ReaderModel from its JSON record (see benchmarks.fit_reader)."""
    cross = data.get("cross")
    return ReaderModel(
        {lang: linear_model(data["sentence"][lang]) for lang in LANGUAGES},
        {lang: linear_model(data["decision"][lang]) for lang in LANGUAGES},
        {lang: float(data["threshold"][lang]) for lang in LANGUAGES},
        data.get("about", {}),
        CrossReader(linear_model(cross["sentence"]), linear_model(cross["decision"]), float(cross["threshold"])) if cross else None,
    )


def load_reader(path: Path) -> ReaderModel:
    """The reader's weights from their JSON file (see benchmarks.fit_reader); ModelError if it is unusable."""
    try:
        return reader_model(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"The reader's weights in {path} are missing or damaged ({e}): run `python -m benchmarks.fit_reader`.") from e


def sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    """The logistic function: a logit as a probability."""
    return 1.0 / (1.0 + np.exp(-x))


def language(question: str) -> str:
    """Which reader variant serves the question."""
    return LANGUAGES[0] if is_chinese(question) else LANGUAGES[1]


def decision_features(features: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """One row (DECISION_FEATURES order) describing the best sentence and its rivals, for the answer/decline model."""
    order = np.argsort(-logits, kind="stable")
    best = features[order[0]]
    col = {name: best[SENTENCE_FEATURES.index(name)] for name in SENTENCE_FEATURES}
    near = order[:3]
    return np.array([[
        logits[order[0]],
        logits[order[0]] - logits[order[1]] if len(order) > 1 else 0.0,
        col["dense"], col["passage"], col["passage_z"], col["predicate_overlap"], col["idf_overlap"], col["key_missing"],
        features[:, SENTENCE_FEATURES.index("key_missing")].min(),
        col["number_missing"], col["type_missing"],
        features[near, SENTENCE_FEATURES.index("type_found")].max(),
    ]], dtype=np.float32)


def score(model: ReaderModel, features: np.ndarray, question: str) -> tuple[np.ndarray, float]:
    """Each candidate sentence's logit of holding the answer, and the probability that the question is answered."""
    if not len(features):
        return np.zeros(0, dtype=np.float32), 0.0
    lang = language(question)
    logits = model.sentence[lang].logits(features, SENTENCE_FEATURES)
    decision = model.decision[lang].logits(decision_features(features, logits), DECISION_FEATURES)[0]
    return logits, float(sigmoid(decision))


def cross_candidates(logits: np.ndarray, count: int) -> np.ndarray:
    """The first stage's best `count` candidates, best first: the ones the cross-encoder re-reads."""
    return np.argsort(-logits, kind="stable")[:count]


def cross_decision_features(answered: float, cross: np.ndarray) -> np.ndarray:
    """One row (CROSS_DECISION_FEATURES order): the first stage's decision logit and the best two cross logits."""
    ranked = np.sort(cross)[::-1]
    margin = ranked[0] - ranked[1] if len(ranked) > 1 else 0.0
    p = min(max(answered, 1e-6), 1 - 1e-6)
    return np.array([[np.log(p / (1 - p)), ranked[0], margin]], dtype=np.float32)


def rescore(model: CrossReader, logits: np.ndarray, answered: float, top: np.ndarray, cross: np.ndarray) -> tuple[np.ndarray, float]:
    """Second-stage logits (the candidates not re-read rank below every re-read one) and P(answered)."""
    second = np.full(len(logits), -np.inf, dtype=np.float32)
    second[top] = model.sentence.logits(np.column_stack([logits[top], cross]), CROSS_SENTENCE_FEATURES)
    decision = model.decision.logits(cross_decision_features(answered, cross), CROSS_DECISION_FEATURES)[0]
    return second, float(sigmoid(decision))


def reread(model: ReaderModel, encoder: CrossEncoder, question: str, logits: np.ndarray, answered: float,
           text_of: Callable[[int], str], count: int) -> tuple[np.ndarray, float, float]:
    """The second stage: the best `count` candidates (texts by candidate number) re-read with the cross-encoder; logits,
    P(answered) and the threshold that applies (the first stage's, unchanged, for a question without Chinese)."""
    if model.cross is None or language(question) != LANGUAGES[0]:
        return logits, answered, model.threshold[language(question)]
    top = cross_candidates(logits, count)
    logits, answered = rescore(model.cross, logits, answered, top, cross_scores(encoder, question, [text_of(i) for i in top]))
    return logits, answered, model.cross.threshold


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def choose_sentences(index: Index, logits: np.ndarray, rows: list[int], settings: ReaderSettings) -> list[tuple[int, float]]:
    """The best one to max_sentences sentences within the margin, near-duplicates dropped, in reading order."""
    chosen: list[tuple[int, float]] = []
    seen: list[set[str]] = []
    for i in np.argsort(-logits, kind="stable"):
        if chosen and (len(chosen) >= settings.max_sentences or logits[i] < chosen[0][1] - settings.margin):
            break
        grams = bigrams(index.sentences[rows[i]].text) or {index.sentences[rows[i]].text}
        if any(_jaccard(grams, g) > settings.duplicate_overlap for g in seen):
            continue
        chosen.append((rows[i], float(logits[i])))
        seen.append(grams)
    # Sentences of one passage are quoted in the article's order (cause before effect); passages best first.
    first_seen = {}
    for row, _ in chosen:
        first_seen.setdefault(index.sentences[row].passage, len(first_seen))
    return sorted(chosen, key=lambda c: (first_seen[index.sentences[c[0]].passage], c[0]))


def read(index: Index, hits: list[Hit], query_vector: np.ndarray, question: str, model: ReaderModel,
         settings: ReaderSettings, encoder: CrossEncoder | None = None) -> tuple[list[tuple[int, float]], float, bool]:
    """Chosen (sentence row, logit) pairs, P(answered), and whether to decline; with an encoder, through the second stage."""
    features, rows = sentence_features(index, hits, query_vector, question)
    if not rows:
        return [], 0.0, True
    logits, answered = score(model, features, question)
    threshold = model.threshold[language(question)]
    if encoder is not None:
        logits, answered, threshold = reread(model, encoder, question, logits, answered, lambda i: index.sentences[rows[i]].text,
                                             settings.cross.candidates)
    if settings.decline_below is not None:
        threshold = settings.decline_below
    return choose_sentences(index, logits, rows, settings), answered, answered < threshold


def page_label(pages: Sequence[int]) -> str:
    """How a citation names pages: "p. 3", "pp. 3–4", or "" for formats without pages."""
    if not pages:
        return ""
    return f"p. {pages[0]}" if len(pages) == 1 else f"pp. {min(pages)}–{max(pages)}"


def wanted_bigrams(index: Index, question: str) -> set[str]:
    """What a quote is cut to cover: the question's bigrams, or an English question's Chinese translations' bigrams."""
    if is_chinese(question):
        return bigrams(question)
    return {g for word in chinese_words(question, index.bm25.vocab_dict) for g in bigrams(word)}


def quote(sentence: str, wanted: set[str], max_chars: int, min_chars: int) -> str:
    """The sentence, or for one longer than max_chars the shortest run of its clauses (cut at ，；：), at least
    min_chars long, that holds most of the wanted bigrams: never a lead-in like 工业领域， alone."""
    if len(sentence) <= max_chars:
        return sentence
    cuts = [0] + [m.end() for m in CLAUSE_BREAK.finditer(sentence)] + [len(sentence)]
    clauses = [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]
    best, best_key = (0, len(sentence)), None
    for i in range(len(clauses)):
        for j in range(i, len(clauses)):
            start, end = clauses[i][0], clauses[j][1]
            if end - start > max_chars and j > i:
                break
            if end - start < min(min_chars, max_chars):
                continue
            key = (len(wanted & bigrams(sentence[start:end])), -(end - start))
            if best_key is None or key > best_key:
                best, best_key = (start, end), key
    return sentence[best[0] : best[1]].strip()


def _citation(index: Index, article_id: str, pages: tuple[int, ...] = ()) -> Citation:
    article = index.articles[article_id]
    return Citation(article.title, article.authors, article.source, article.id, article.info_source, article.published, pages)


def quoted(index: Index, rows: Sequence[int], question: str, settings: ReaderSettings) -> list[str]:
    """What is quoted of each chosen sentence (a long one by its answering clauses)."""
    wanted = wanted_bigrams(index, question)
    return [quote(index.sentences[row].text, wanted, settings.max_quote_chars, settings.min_quote_chars) for row in rows]


def _evidence(index: Index, row: int, score: float, text: str) -> Evidence:
    passage = index.passages[index.sentences[row].passage]
    return Evidence(text, score, passage.id, index.articles[passage.article_id].title, passage.source, passage.article_id, passage.pages)


def _retrieved(index: Index, hit: Hit) -> RetrievedPassage:
    p = index.passages[hit.row]
    return RetrievedPassage(p.id, p.text, hit.score, hit.dense_score, hit.keyword_score, p.section,
                            _citation(index, p.article_id), p.pages)


def compose(index: Index, question: str, hits: list[Hit], chosen: list[tuple[int, float]], answered: float, abstained: bool,
            timings_ms: dict[str, float], settings: ReaderSettings) -> Answer:
    """The Answer record: quoted sentences (none when abstaining), passages best first, distinct cited articles."""
    texts = [] if abstained else quoted(index, [row for row, _ in chosen], question, settings)
    evidence = tuple(_evidence(index, row, score, text) for (row, score), text in zip(chosen, texts))
    cited: dict[str, set[int]] = {}
    for e in evidence:
        cited.setdefault(e.article_id, set()).update(e.pages)
    return Answer(
        question=question,
        answer="".join(e.text for e in evidence),
        abstained=abstained,
        confidence=round(answered, 4),
        evidence=evidence,
        passages=tuple(_retrieved(index, h) for h in hits),
        citations=tuple(_citation(index, a, tuple(sorted(pages))) for a, pages in cited.items()),
        timings_ms=timings_ms,
    )
