"""Fit the reader: sentence-feature weights on CMRC 2018 trial, then the abstention threshold on the seed dev set.

Run by hand: `python -m benchmarks.fit_reader`; it prints the values to put into rag/config.py (ReaderWeights).
The weights are those of a grid search that maximise answer hit@1 (the top sentence holds a gold answer) over
the sentences the reader sees (the retrieved passages' sentences), the dense weight fixed at 1. The thresholds
(one for Chinese questions, one for the others) minimise the sum of the false-abstention and false-answer rates
on the seed dev set.
"""
from __future__ import annotations

import itertools
import sys
from dataclasses import replace

import numpy as np

from benchmarks.cmrc import CMRC_DIR, cached_index, contains_answer, load_split
from benchmarks.seed_dev import load_dev_set
from rag.answer import FEATURES, sentence_features
from rag.config import Settings
from rag.keywords import is_chinese
from rag.model import encode_queries, load_model
from rag.pipeline import Pipeline
from rag.retrieve import retrieve

GRID = {
    "overlap": (0.0, 0.25, 0.5, 0.75, 1.0, 1.5),
    "passage": (0.0, 0.5, 1.0, 2.0),
    "predicate_overlap": (0.0, 0.25, 0.5, 0.75, 1.0),
}


def fit_weights(settings: Settings, model) -> dict[str, float]:
    """The feature weights (dense fixed at 1) that maximise answer hit@1 on CMRC trial, by grid search."""
    index = cached_index("trial", settings, model)
    _, questions = load_split("trial", settings.max_passage_chars)
    questions = [q for q in questions if q.answers]
    vectors = encode_queries(model, [q.text for q in questions])
    cases = []
    for q, v in zip(questions, vectors):
        hits = retrieve(index, v, q.text, settings.top_k, settings)
        features, rows = sentence_features(index, hits, v, q.text)
        if rows:
            cases.append((features, np.array([contains_answer(index.sentences[r].text, q.answers) for r in rows])))
    free = [name for name in FEATURES if name != "dense"]
    best_hit, best = -1.0, None
    for values in itertools.product(*(GRID[name] for name in free)):
        w = np.array([1.0 if name == "dense" else values[free.index(name)] for name in FEATURES], dtype=np.float32)
        hit = np.mean([labels[np.argmax(features @ w)] for features, labels in cases])
        if hit > best_hit:
            best_hit, best = hit, w
    print(f"CMRC 2018 trial answer hit@1 with the fitted weights: {best_hit:.3f} over {len(cases)} questions")
    return {name: round(float(value), 3) for name, value in zip(FEATURES, best)}


def best_threshold(scored: list[tuple[float, bool]]) -> tuple[float, float, float]:
    """The threshold (midway between two scores) minimising false-abstention + false-answer rates, with both rates."""
    values = sorted({score for score, _ in scored})
    candidates = [values[0] - 1e-3] + [(a + b) / 2 for a, b in zip(values, values[1:])] + [values[-1] + 1e-3]
    answerable = [score for score, ok in scored if ok]
    unanswerable = [score for score, ok in scored if not ok]
    best = None
    for threshold in candidates:
        false_abstain = np.mean([s < threshold for s in answerable]) if answerable else 0.0
        false_answer = np.mean([s >= threshold for s in unanswerable]) if unanswerable else 0.0
        if best is None or false_abstain + false_answer < best[1] + best[2]:
            best = (round(float(threshold), 3), float(false_abstain), float(false_answer))
    return best


def calibrate_thresholds(pipeline: Pipeline) -> dict[str, tuple[float, float, float]]:
    """Abstention thresholds on the seed dev set, one for Chinese questions and one for the others."""
    no_abstention = replace(pipeline.settings.reader, threshold=-np.inf, threshold_cross_lingual=-np.inf)
    pipeline = Pipeline(replace(pipeline.settings, reader=no_abstention), model=pipeline.model)
    groups: dict[str, list[tuple[float, bool]]] = {"threshold": [], "threshold_cross_lingual": []}
    for q in load_dev_set():
        group = "threshold" if is_chinese(q.question) else "threshold_cross_lingual"
        groups[group].append((pipeline.ask(q.question).confidence, bool(q.evidence)))
    return {name: best_threshold(scored) for name, scored in groups.items() if scored}


def main() -> int:
    """Fit, calibrate and print the values for rag/config.py."""
    settings = Settings.from_env()
    model = load_model(settings.model)
    if CMRC_DIR.is_dir():
        weights = fit_weights(settings, model)
        print("fitted on CMRC 2018 trial:", weights)
        settings = replace(settings, reader=replace(settings.reader, **weights))
    else:
        print(f"skipped the weight fit: {CMRC_DIR} is absent")
    for name, (threshold, false_abstain, false_answer) in calibrate_thresholds(Pipeline(settings, model=model)).items():
        print(f"{name} = {threshold}: false abstention rate {false_abstain:.3f}, false answer rate {false_answer:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
