"""Open-domain retrieval and answer extraction on CMRC 2018 dev: keyword, dense and hybrid side by side.

Run by hand: `python -m benchmarks.cmrc [--split dev|trial] [--limit N]`. Indexes every context of the split
(cached under the RAG cache folder, so a second run only asks), asks every question, prints a table. The last row,
gold-context, gives the reader only the gold context's passages: answer extraction alone, retrieval aside.
Skips cleanly when ../shared/data/cmrc2018 is absent.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import numpy as np

from rag.answer import feature_weights, read, sentence_features
from rag.config import PROJECT_ROOT, Settings, cache_dir
from rag.corpus import Article, Corpus, passages_of
from rag.index import Index, build_index, load_index
from rag.model import encode_passages, encode_queries, load_model, model_fingerprint
from rag.retrieve import Hit, retrieve

CMRC_DIR = PROJECT_ROOT.parent / "shared" / "data" / "cmrc2018"
GOLD = "gold-context"
METHODS = ("keyword", "dense", "rrf", "weighted", GOLD)
RECALL_AT = (1, 5, 20)
MRR_AT = 10


@dataclass(frozen=True)
class Question:
    text: str
    context: str  # the gold context's article id
    answers: tuple[str, ...]


def load_split(split: str, max_passage_chars: int) -> tuple[Corpus, list[Question]]:
    """CMRC contexts as a corpus (one article per context) and its questions."""
    path = CMRC_DIR / f"cmrc2018_{split}.json"
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    articles, passages, questions = [], [], []
    for doc in data:
        for para in doc["paragraphs"]:
            article = Article(id=para["id"], title=doc["title"], authors=(), source=path.name)
            articles.append(article)
            passages += passages_of(article, [("paragraph", para["context"])], max_passage_chars)
            questions += [
                Question(qa["question"], para["id"], tuple(a["text"] for a in qa["answers"] if a["text"].strip()))
                for qa in para["qas"]
            ]
    return Corpus(tuple(articles), tuple(passages), (path.name,), ()), questions


def cached_index(split: str, settings: Settings, model) -> Index:
    """The split's index, built once into the cache folder and reused while it loads."""
    folder = cache_dir() / "bench" / f"cmrc2018-{split}"
    corpus, _ = load_split(split, settings.max_passage_chars)
    fingerprint = f"cmrc2018-{split}-{settings.max_passage_chars}"
    try:
        index = load_index(folder)
        if index.manifest["corpus_fingerprint"] == fingerprint and index.manifest["model"] == settings.model:
            return index
    except Exception:  # missing or damaged: build it
        pass
    encode = lambda texts: encode_passages(model, texts, batch_size=settings.batch_size, show_progress=True)
    report = build_index(corpus, folder, settings.model, model_fingerprint(settings.model), encode, fingerprint,
                         settings.max_passage_chars)
    print(f"indexed {report.passages} passages, {report.sentences} sentences in {report.seconds:.0f} s", file=sys.stderr)
    return load_index(folder)


def contains_answer(text: str, answers: tuple[str, ...]) -> bool:
    """Whether a text holds one of the gold answer strings."""
    return any(a in text for a in answers)


def evaluate(index: Index, questions: list[Question], vectors: np.ndarray, settings: Settings, method: str) -> dict:
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
            hits = [Hit(r, 1.0, float(index.dense.reconstruct(r) @ v), 0.0) for r in rows_of[q.context]]
        else:
            hits = retrieve(index, v, q.text, depth, settings, fusion=method)
        contexts = list(dict.fromkeys(index.passages[h.row].article_id for h in hits))
        rank = contexts.index(q.context) if q.context in contexts else None
        for k in RECALL_AT:
            recall[k] += rank is not None and rank < k
        mrr += 1.0 / (rank + 1) if rank is not None and rank < MRR_AT else 0.0
        top = hits[: settings.top_k]
        chosen, _ = read(index, top, v, q.text, settings.reader)
        features, rows = sentence_features(index, top, v, q.text)
        best3 = [rows[i] for i in np.argsort(-(features @ feature_weights(settings.reader)))[:3]]
        hit1 += bool(chosen) and contains_answer(index.sentences[chosen[0][0]].text, q.answers)
        hit3 += any(contains_answer(index.sentences[r].text, q.answers) for r in best3)
        length += sum(len(index.sentences[r].text) for r, _ in chosen)
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
    if not CMRC_DIR.is_dir():
        print(f"skipped: {CMRC_DIR} is absent")
        return 0
    settings = Settings.from_env()
    model = load_model(settings.model)
    index = cached_index(args.split, settings, model)
    _, questions = load_split(args.split, settings.max_passage_chars)
    questions = [q for q in questions if q.answers][: args.limit or None]
    vectors = encode_queries(model, [q.text for q in questions])
    print(f"CMRC 2018 {args.split}: {len(index.articles)} contexts, {len(index.passages)} passages, {len(questions)} questions")
    print_table([evaluate(index, questions, vectors, settings, m) for m in args.methods.split(",")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
