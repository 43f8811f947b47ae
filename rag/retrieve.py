"""Hybrid retrieval: dense (FAISS or Milvus) and keyword (BM25) passage rankings, fused into one."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rag.config import Settings
from rag.index import Index
from rag.keywords import is_chinese, tokens
from rag.translate import chinese_words

FUSIONS = ("rrf", "weighted", "dense", "keyword")


@dataclass(frozen=True)
class Hit:
    """A retrieved passage (its row in Index.passages) with the scores that ranked it."""

    row: int
    score: float
    dense_score: float
    keyword_score: float
    dense_z: float = 0.0  # how far dense_score stands above the other candidates' (z-score): comparable across languages


def dense_scores(index: Index, query_vector: np.ndarray, depth: int) -> dict[int, float]:
    """Cosine similarity of the best `depth` passages to the query."""
    if index.store:
        return index.store.search_dense(query_vector, depth)
    scores, rows = index.dense.search(query_vector.reshape(1, -1).astype(np.float32), min(depth, index.dense.ntotal))
    return {int(r): float(s) for r, s in zip(rows[0], scores[0]) if r >= 0}


def sentence_scores(index: Index, query_vector: np.ndarray, candidates: list[int], depth: int, search_max: int) -> dict[int, float]:
    """The best sentence cosine of each candidate passage and, while the index holds at most `search_max` sentences
    (searched exhaustively), of the passages holding the `depth` best sentences overall.

    A long passage that covers several topics embeds as their blend; its one sentence on the question's topic is found.
    """
    query = query_vector.ravel().astype(np.float32)
    starts = index.sentences.starts
    passages = np.array(candidates, dtype=np.int64)
    lengths = starts[passages + 1] - starts[passages]
    passages, first, lengths = passages[lengths > 0], starts[passages][lengths > 0], lengths[lengths > 0]
    rows = np.repeat(first - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())  # every candidate's sentences
    cosines = index.sentence_vectors[rows].astype(np.float32) @ query if len(rows) else np.zeros(0, dtype=np.float32)
    best = dict(zip(passages.tolist(), np.maximum.reduceat(cosines, np.cumsum(lengths) - lengths).tolist())) if len(rows) else {}
    if 0 < len(index.sentence_vectors) <= search_max:
        everything = index.sentence_matrix @ query
        top = np.argpartition(-everything, depth)[:depth] if len(everything) > depth else np.arange(len(everything))
        for passage, cosine in zip(index.sentences.passage_of(top).tolist(), everything[top].tolist()):
            best[passage] = max(best.get(passage, -1.0), cosine)
    return best


def _keyword_query(index: Index, question: str) -> str:
    """What keyword search looks for: the question, or the Chinese words an English one translates to (rag.translate)."""
    return question if is_chinese(question) else " ".join(chinese_words(question, index.bm25.vocab_dict))


def idf(index: Index, word: str) -> float:
    """BM25's inverse document frequency of a word in the index's passages (highest for a word it never saw)."""
    n = len(index.passages)
    column = index.bm25.vocab_dict.get(word)
    df = 0 if column is None else int(index.bm25.scores["indptr"][column + 1] - index.bm25.scores["indptr"][column])
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def keyword_scores(index: Index, question: str, depth: int) -> dict[int, float]:
    """BM25 scores of the best `depth` passages that share at least one word with the question.

    A question without Chinese is searched for by the Chinese words its English ones translate to (rag.translate).
    """
    query = _keyword_query(index, question)
    if not query:
        return {}
    if index.store:
        return index.store.search_keyword(query, depth)
    known = [t for t in tokens(query) if t in index.bm25.vocab_dict]
    if not known:
        return {}
    scores = index.bm25.get_scores(known)
    top = np.argpartition(-scores, depth)[:depth] if depth < len(scores) else np.arange(len(scores))  # no full sort
    rows = top[np.argsort(-scores[top])]
    return {int(r): float(scores[r]) for r in rows if scores[r] > 0}


def keyword_ceiling(index: Index, question: str) -> float:
    """The BM25 score of a passage of average length holding each of the question's known words once: their IDF summed.

    Weighted fusion scales keyword scores by it, not by the best hit's: a passage sharing one common word with a
    question worded unlike the articles is then a weak keyword match, not a perfect one.
    """
    return sum(idf(index, t) for t in dict.fromkeys(tokens(_keyword_query(index, question))) if t in index.bm25.vocab_dict)


def _ranks(scores: dict[int, float]) -> dict[int, int]:
    return {row: rank for rank, row in enumerate(sorted(scores, key=scores.get, reverse=True))}


def fuse(dense: dict[int, float], keyword: dict[int, float], method: str, rrf_k: int, keyword_weight: float,
         ceiling: float = 0.0) -> dict[int, float]:
    """One score per passage from the two rankings; a ranking that found nothing simply does not vote. Weighted: the
    cosine plus keyword_weight × the keyword score over `ceiling` (keyword_ceiling; the best hit's score without one), at most 1."""
    if method not in FUSIONS:
        raise ValueError(f"Unknown fusion {method!r}; choose one of {FUSIONS}.")
    if method == "dense" or not keyword:
        return dict(dense)
    if method == "keyword":
        return dict(keyword)
    if method == "rrf":
        fused: dict[int, float] = {}
        for ranking in (_ranks(dense), _ranks(keyword)):
            for row, rank in ranking.items():
                fused[row] = fused.get(row, 0.0) + 1.0 / (rrf_k + rank + 1)
        return fused
    top = ceiling or max(keyword.values())
    floor = min(dense.values()) if dense else 0.0
    return {row: dense.get(row, floor) + keyword_weight * min(1.0, keyword.get(row, 0.0) / top) for row in set(dense) | set(keyword)}


def retrieve(index: Index, query_vector: np.ndarray, question: str, top_k: int, settings: Settings, fusion: str | None = None) -> list[Hit]:
    """The top_k passages for a question, best first, each with its dense, keyword and fused scores.

    `fusion` ("rrf", "weighted", "dense" or "keyword") defaults to settings.fusion.
    """
    fusion = fusion or settings.fusion
    dense = dense_scores(index, query_vector, settings.depth) if fusion != "keyword" else {}
    if fusion != "keyword" and settings.sentence_depth > 0:  # a passage's dense score: its own cosine or its best sentence's
        by_sentence = sentence_scores(index, query_vector, list(dense), settings.sentence_depth, settings.sentence_search_max)
        for row, cosine in by_sentence.items():
            dense[row] = max(dense.get(row, -1.0), cosine)
    values = np.fromiter(dense.values(), dtype=np.float32) if dense else np.zeros(1, dtype=np.float32)
    mean, spread = float(values.mean()), float(values.std()) or 1.0
    keyword = keyword_scores(index, question, settings.depth) if fusion != "dense" else {}
    ceiling = keyword_ceiling(index, question) if fusion == "weighted" and keyword else 0.0
    fused = fuse(dense, keyword, fusion, settings.rrf_k, settings.keyword_weight, ceiling)
    best = sorted(fused, key=fused.get, reverse=True)[:top_k]
    missing = [r for r in best if r not in dense]
    if missing:  # a keyword-only hit still gets its true cosine, for display and answer scoring
        vectors = np.vstack([index.dense.reconstruct(r) for r in missing])
        dense.update(zip(missing, (vectors @ query_vector.ravel()).tolist()))
    return [Hit(r, fused[r], dense.get(r, 0.0), keyword.get(r, 0.0), (dense.get(r, mean) - mean) / spread) for r in best]
