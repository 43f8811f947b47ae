"""The reader on questions it was not fitted on: the previous hand-set reader and the learned one, side by side.

Run by hand: `python -m benchmarks.reader` (after `python -m benchmarks.fit_reader`). Sets: CMRC 2018 dev (all of it)
and the held-out 20% of DRCD dev and SQuAD 2.0 zh (by article; benchmarks.qa_sets), each indexed as a folder of
documents and asked open-domain. Prints, per set and reader: hit@1 (the best sentence holds a gold answer), hit@3,
the length of the quote, answerables wrongly declined and unanswerables declined; then the decline curves of the
learned readers on held-out SQuAD 2.0 zh against their thresholds, also drawn into docs/decline_curves.svg. v3 (the
cross-encoder's second stage) is measured when rag/cross_encoder.safetensors and its fitted stage in the reader's
weights are there.
"""
from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np

from benchmarks.cmrc import print_table
from benchmarks.fit_reader import Case, reader_cases
from benchmarks.qa_sets import available, prepared
from rag.answer import choose_sentences, language, quoted, reread, score
from rag.config import PROJECT_ROOT, Settings
from rag.features import SENTENCE_FEATURES
from rag.index import Index
from rag.model import load_model
from rag.pipeline import Pipeline

MEASURE_SETS = ("cmrc-dev", "drcd", "squad2-zh")
# The reader before v2: a fixed weighted sum of three features, declining below a score calibrated on the seed dev set.
V1_WEIGHTS = {"dense": 1.0, "passage": 2.0, "predicate_overlap": 0.5}
V1_THRESHOLD = 2.759
V1_MARGIN = 0.05  # further sentences quoted within this score of the best
CURVE = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
CURVE_SVG = PROJECT_ROOT / "docs" / "decline_curves.svg"
TARGET = (0.15, 0.50)  # issue 11: half the unanswerables declined at most 15% of the answerables wrongly declined
SVG_SIZE, SVG_MARGIN = 360, 50
SVG_COLOURS = {"v2": "#1f77b4", "v3": "#d62728"}
SVG_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)


def v1_scores(features: np.ndarray) -> np.ndarray:
    return sum(w * features[:, SENTENCE_FEATURES.index(f)] for f, w in V1_WEIGHTS.items())


def summarise(name: str, reader: str, index: Index, cases: list[Case], scored: list[tuple[np.ndarray, bool]], settings: Settings) -> dict:
    """One table row: hit@1/@3 and quote length over answerables, and both decline rates."""
    answerable = [i for i, c in enumerate(cases) if c.answerable]
    unanswerable = [i for i, c in enumerate(cases) if not c.answerable]
    hit1 = hit3 = chars = 0.0
    for i in answerable:
        logits, _ = scored[i]
        order = np.argsort(-logits, kind="stable")
        hit1 += cases[i].labels[order[0]]
        hit3 += cases[i].labels[order[:3]].any()
        chosen = choose_sentences(index, logits, cases[i].rows, settings.reader)
        chars += sum(map(len, quoted(index, [r for r, _ in chosen], cases[i].question, settings.reader)))
    n = max(1, len(answerable))
    return {
        "set": name, "reader": reader, "answerable": len(answerable), "hit@1": hit1 / n, "hit@3": hit3 / n,
        "answer chars": chars / n,
        "answerables wrongly declined": np.mean([scored[i][1] for i in answerable]) if answerable else float("nan"),
        "unanswerable": len(unanswerable),
        "unanswerables declined": np.mean([scored[i][1] for i in unanswerable]) if unanswerable else float("nan"),
    }


def curve_svg(curves: dict[str, list[tuple[float, float, float]]], fitted: dict[str, float | None]) -> str:
    """The decline curves as a small SVG plot: answerables wrongly declined (x) against unanswerables declined (y)."""
    side = SVG_SIZE - 2 * SVG_MARGIN
    at = lambda x, y: (SVG_MARGIN + x * side, SVG_MARGIN + (1 - y) * side)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{SVG_SIZE}" height="{SVG_SIZE}" font-family="sans-serif" font-size="11">',
             '<rect width="100%" height="100%" fill="white"/>',
             f'<rect x="{SVG_MARGIN}" y="{SVG_MARGIN}" width="{side}" height="{side}" fill="none" stroke="#999"/>',
             '<line x1="{:.0f}" y1="{:.0f}" x2="{:.0f}" y2="{:.0f}" stroke="#ccc" stroke-dasharray="4"/>'.format(*at(0, 0), *at(1, 1)),
             '<circle cx="{:.1f}" cy="{:.1f}" r="4" fill="none" stroke="black"/>'.format(*at(*TARGET)),
             '<text x="{:.0f}" y="{:.0f}">target</text>'.format(at(*TARGET)[0] + 6, at(*TARGET)[1] + 4),
             f'<text x="{SVG_SIZE / 2:.0f}" y="{SVG_SIZE - 15}" text-anchor="middle">answerables wrongly declined</text>',
             f'<text x="15" y="{SVG_SIZE / 2:.0f}" text-anchor="middle" transform="rotate(-90 15 {SVG_SIZE / 2:.0f})">unanswerables declined</text>',
             f'<text x="{SVG_SIZE / 2:.0f}" y="25" text-anchor="middle">held-out SQuAD 2.0 zh, decline below P(answered) = t</text>']
    for tick in SVG_TICKS:
        parts.append('<text x="{:.0f}" y="{:.0f}" text-anchor="middle">{}</text>'.format(at(tick, 0)[0], at(tick, 0)[1] + 14, tick))
        parts.append('<text x="{:.0f}" y="{:.0f}" text-anchor="end">{}</text>'.format(at(0, tick)[0] - 4, at(0, tick)[1] + 4, tick))
    for n, (reader, points) in enumerate(curves.items()):
        xy = [at(0, 0)] + [at(false_decline, declined) for _, false_decline, declined in points] + [at(1, 1)]
        colour = SVG_COLOURS.get(reader, "black")
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in xy)}"/>')
        label = f"{reader} (fitted t = {fitted[reader]:.3f})" if fitted.get(reader) is not None else reader
        parts.append(f'<text x="{SVG_MARGIN + side - 5}" y="{SVG_MARGIN + side - 10 - 14 * n}" text-anchor="end" fill="{colour}">{label}</text>')
    return "\n".join(parts + ["</svg>\n"])


def main() -> int:
    """Ask each measuring set, print the side-by-side table and the decline curve."""
    settings = Settings.from_env()
    model = load_model(settings.model, settings.backend)
    pipeline = Pipeline(replace(settings, reader=replace(settings.reader, mode="cross")), model=model)
    reader = pipeline.reader
    encoder = pipeline.cross_encoder if reader.cross is not None and settings.reader.cross.weights.is_file() else None
    rows, curve = [], None
    for name in MEASURE_SETS:
        if not available(name):
            print(f"skipped {name}: absent")
            continue
        index, questions, vectors = prepared(name, settings, model)
        keep = [i for i, q in enumerate(questions) if name == "cmrc-dev" or q.held_out]
        questions, vectors = [questions[i] for i in keep], vectors[keep]
        cases = reader_cases(name, index, questions, vectors, settings)
        v1 = [(v1_scores(c.features), float(v1_scores(c.features).max()) < V1_THRESHOLD) for c in cases]
        v2, v3, probabilities = [], [], {"v2": [], "v3": []}
        for c in cases:
            logits, answered = score(reader, c.features, c.question)
            v2.append((logits, answered < reader.threshold[language(c.question)]))
            probabilities["v2"].append(answered)
            if encoder is not None:
                logits, answered, threshold = reread(reader, encoder, c.question, logits, answered, c.texts.__getitem__,
                                                     settings.reader.cross.candidates)
                v3.append((logits, answered < threshold))
                probabilities["v3"].append(answered)
        rows.append(summarise(name, "v1 (hand-set)", index, cases, v1, replace(settings, reader=replace(settings.reader, margin=V1_MARGIN))))
        rows.append(summarise(name, "v2 (learned)", index, cases, v2, settings))
        if encoder is not None:
            rows.append(summarise(name, "v3 (cross-encoder)", index, cases, v3, settings))
        if name == "squad2-zh":
            answerable = np.array([c.answerable for c in cases])
            curve = {k: [(t, np.mean(np.array(p)[answerable] < t), np.mean(np.array(p)[~answerable] < t)) for t in CURVE]
                     for k, p in probabilities.items() if p}
    if rows:
        print_table(rows)
    fitted = {"v2": reader.threshold["monolingual"], "v3": reader.cross.threshold if reader.cross else None}
    for k, points in (curve or {}).items():
        print(f"\nheld-out SQuAD 2.0 zh, reader {k}, decline below P(answered) = t (fitted t = {fitted[k]:.3f}):")
        print("| t | answerables wrongly declined | unanswerables declined |\n|---|---|---|")
        for t, false_decline, declined in points:
            print(f"| {t:.1f} | {false_decline:.3f} | {declined:.3f} |")
    if curve:
        CURVE_SVG.write_text(curve_svg(curve, fitted), encoding="utf-8")
        print(f"\ndrawn into {CURVE_SVG.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
