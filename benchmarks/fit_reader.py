"""Fit the reader: sentence-feature weights on CMRC 2018 trial, then the abstention threshold on the seed dev set.

Run by hand: `python -m benchmarks.fit_reader`; it prints the values to put into rag/config.py (ReaderWeights).
The weights come from a logistic regression of "this sentence contains a gold answer" on the features of the
sentences the reader sees (the retrieved passages' sentences); the threshold is the one that minimises the sum of
the false-abstention and false-answer rates on the seed dev set.
"""
from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
from sklearn.linear_model import LogisticRegression

from benchmarks.cmrc import CMRC_DIR, cached_index, contains_answer, load_split
from benchmarks.seed_dev import is_correct, load_dev_set
from rag.answer import FEATURES, sentence_features
from rag.config import Settings
from rag.model import encode_queries, load_model
from rag.pipeline import Pipeline
from rag.retrieve import retrieve


def fit_weights(settings: Settings, model) -> dict[str, float]:
    """Logistic-regression weights of the features on CMRC trial, scaled so the dense weight is 1."""
    index = cached_index("trial", settings, model)
    _, questions = load_split("trial", settings.max_passage_chars)
    questions = [q for q in questions if q.answers]
    vectors = encode_queries(model, [q.text for q in questions])
    xs, ys = [], []
    for q, v in zip(questions, vectors):
        hits = retrieve(index, v, q.text, settings.top_k, settings.depth, settings.fusion, settings.rrf_k, settings.keyword_weight)
        features, rows = sentence_features(index, hits, v, q.text)
        xs.append(features)
        ys += [contains_answer(index.sentences[r].text, q.answers) for r in rows]
    fit = LogisticRegression(C=10.0, max_iter=1000).fit(np.vstack(xs), np.array(ys))
    coef = fit.coef_[0] / fit.coef_[0][FEATURES.index("dense")]
    return dict(zip(FEATURES, (round(float(c), 3) for c in coef)))


def calibrate_threshold(pipeline: Pipeline) -> tuple[float, float, float]:
    """The threshold minimising false-abstention + false-answer rates on the seed dev set, with both rates."""
    questions = load_dev_set()
    open_reader = replace(pipeline.settings, reader=replace(pipeline.settings.reader, threshold=-np.inf))
    pipeline = Pipeline(open_reader, model=pipeline.model)
    scored = []
    for q in questions:
        answer = pipeline.ask(q.question)
        scored.append((answer.confidence, bool(q.evidence), is_correct(q, answer)))
    best = None
    for threshold in sorted({s for s, _, _ in scored}) + [np.inf]:
        false_abstain = np.mean([s < threshold for s, answerable, _ in scored if answerable])
        false_answer = np.mean([s >= threshold for s, answerable, _ in scored if not answerable])
        if best is None or false_abstain + false_answer < best[1] + best[2]:
            best = (threshold, false_abstain, false_answer)
    return best


def main() -> int:
    settings = Settings.from_env()
    model = load_model(settings.model)
    if CMRC_DIR.is_dir():
        weights = fit_weights(settings, model)
        print("fitted on CMRC 2018 trial:", weights)
        settings = replace(settings, reader=replace(settings.reader, **weights))
    else:
        print(f"skipped the weight fit: {CMRC_DIR} is absent")
    threshold, false_abstain, false_answer = calibrate_threshold(Pipeline(settings, model=model))
    print(f"threshold {threshold:.4f}: false abstention rate {false_abstain:.3f}, false answer rate {false_answer:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
