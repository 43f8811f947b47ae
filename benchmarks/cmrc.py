"""Open-domain retrieval and answer extraction on CMRC 2018 dev: keyword, dense and hybrid side by side.

Run by hand: `python -m benchmarks.cmrc [--split dev|trial] [--limit N]`. Indexes every context of the split
(cached under the RAG cache folder, so a second run only asks), asks every question, prints a table. The last row,
gold-context, gives the reader only the gold context's passages: answer extraction alone, retrieval aside.
Skips cleanly when ../shared/data/cmrc2018 is absent. hit@1: the reader's best sentence holds a gold answer; hit@3: one
of its three best does; answer chars: the length of what it quotes.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks.qa_sets import available, contains_answer, prepared
from rag.answer import choose_sentences, quoted, score
from rag.config import Settings
from rag.features import sentence_features
from rag.index import Index
from rag.model import load_model
from rag.pipeline import Pipeline
from rag.retrieve import Hit, retrieve

GOLD = "gold-context"
METHODS = ("keyword", "dense", "rrf", "weighted", GOLD)
RECALL_AT = (1, 5, 20)
MRR_AT = 10


def evaluate(index: Index, questions: list, vectors: np.ndarray, settings: Settings, reader, method: str) -> dict:
    """Recall@k and MRR of the gold context, answer hit@1/@3 and answer length for one retrieval method."""
    depth = max(RECALL_AT)
    recall = {k: 0 for k in RECALL_AT}
    mrr = hit1 = hit3 = length = 0.0
    started = time.perf_counter()
    rows_of = {}
    for row, passage in enumerate(index.passages):
        rows_of.setdefault(passage.article_id, []).append(row)
    for q, v in zip(questions, vectors):
        if method == GOLD:  # the reader alone: given the gold context's passages
            hits = [Hit(r, 1.0, float(index.dense.reconstruct(r) @ v), 0.0, 0.0) for r in rows_of[q.context]]
        else:
            hits = retrieve(index, v, q.text, depth, settings, fusion=method)
        contexts = list(dict.fromkeys(index.passages[h.row].article_id for h in hits))
        rank = contexts.index(q.context) if q.context in contexts else None
        for k in RECALL_AT:
            recall[k] += rank is not None and rank < k
        mrr += 1.0 / (rank + 1) if rank is not None and rank < MRR_AT else 0.0
        top = hits[: settings.top_k]
        features, rows = sentence_features(index, top, v, q.text)
        logits, _ = score(reader, features, q.text)
        best3 = [rows[i] for i in np.argsort(-logits, kind="stable")[:3]]
        hit1 += bool(best3) and contains_answer(index.sentences[best3[0]].text, q.answers)
        hit3 += any(contains_answer(index.sentences[r].text, q.answers) for r in best3)
        chosen = choose_sentences(index, logits, rows, settings.reader)
        length += sum(map(len, quoted(index, [r for r, _ in chosen], q.text, settings.reader)))
    n = len(questions)
    return {
        "method": method, **{f"R@{k}": recall[k] / n for k in RECALL_AT}, f"MRR@{MRR_AT}": mrr / n,
        "hit@1": hit1 / n, "hit@3": hit3 / n, "answer chars": length / n,
        "ms/question": (time.perf_counter() - started) * 1000 / n,
    }


def print_table(rows: list[dict]) -> None:
    """A Markdown table of the rows, for the README."""
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


def main(argv: list[str] | None = None) -> int:
    """Index the split, ask its questions with each method, print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default="dev", choices=("dev", "trial"))
    parser.add_argument("--limit", type=int, default=0, help="ask only the first N questions")
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args(argv)
    name = f"cmrc-{args.split}"
    if not available(name):
        print(f"skipped: CMRC 2018 {args.split} is absent")
        return 0
    settings = Settings.from_env()
    model = load_model(settings.model, settings.backend)
    index, questions, vectors = prepared(name, settings, model)
    limit = args.limit or len(questions)
    questions, vectors = questions[:limit], vectors[:limit]
    reader = Pipeline(settings, model=model).reader
    print(f"CMRC 2018 {args.split}: {len(index.articles)} contexts, {len(index.passages)} passages, {len(questions)} questions")
    print_table([evaluate(index, questions, vectors, settings, reader, m) for m in args.methods.split(",")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
