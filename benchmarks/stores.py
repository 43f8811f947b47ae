"""The two stores side by side: embedded FAISS + bm25s against Milvus (a milvus-lite file), same model, same vectors.

Run by hand: `python -m benchmarks.stores [--cmrc]` (needs the seed index: `python -m rag.build`). The Milvus store gets
its own copy of the seed index, rebuilt into a temporary milvus-lite file (every vector reused). Seed dev set: the
accuracy figures of benchmarks.seed_dev, how often the two stores give the same top passage, the same answer and the
same best keyword (BM25) passage (Milvus tokenises with its own jieba analyzer, not rag.keywords), and ask() latency,
questions interleaved. --cmrc adds CMRC 2018 dev (benchmarks.cmrc, weighted fusion) from the cached FAISS index of
benchmarks.qa_sets, copied into Milvus the same way (indexing it the first time takes 10+ minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

from benchmarks.cmrc import evaluate as evaluate_cmrc
from benchmarks.cmrc import print_table
from benchmarks.latency import ROUNDS, percentiles
from benchmarks.qa_sets import available, load, prepared, set_folder
from benchmarks.seed_dev import evaluate as evaluate_seed
from benchmarks.seed_dev import load_dev_set
from rag.config import Settings
from rag.index import build_index, load_index
from rag.model import encode_passages
from rag.pipeline import Pipeline
from rag.retrieve import keyword_scores

MILVUS_FILE = "passages.db"
CMRC = "cmrc-dev"
CMRC_MEASURES = ("R@1", "R@5", "hit@1", "hit@3")
KEYWORD_OVERLAP_AT = 5


def milvus_copy(settings: Settings, work: Path) -> Settings:
    """Settings for a copy of the index in `settings`, served from a milvus-lite file in `work`."""
    shutil.copytree(settings.index, work / "index")
    return replace(settings, index=work / "index", store=str(work / MILVUS_FILE))


def seed_rows(faiss: Pipeline, milvus: Pipeline) -> list[tuple[str, str, str]]:
    """(measure, FAISS, Milvus) rows on the seed dev set."""
    questions = load_dev_set()
    rows = [(name, f"{a:.3f}", f"{b:.3f}") for (name, (a, _)), (b, _) in
            zip(evaluate_seed(faiss, questions).items(), evaluate_seed(milvus, questions).values())]
    same_top = same_answer = same_keyword = keyword_overlap = 0
    latency = {faiss: [], milvus: []}
    depth = faiss.settings.depth
    for _ in range(ROUNDS):
        for q in questions:
            answers = []
            for pipeline in (faiss, milvus):
                started = time.perf_counter()
                answers.append(pipeline.ask(q.question))
                latency[pipeline].append((time.perf_counter() - started) * 1000)
            a, b = answers
            same_top += a.passages[0].id == b.passages[0].id
            same_answer += (a.answer, a.abstained) == (b.answer, b.abstained)
    for q in questions:
        ranked = [sorted(s, key=s.get, reverse=True) for s in (keyword_scores(p.ensure_index(), q.question, depth) for p in (faiss, milvus))]
        same_keyword += ranked[0][:1] == ranked[1][:1]
        keyword_overlap += len(set(ranked[0][:KEYWORD_OVERLAP_AT]) & set(ranked[1][:KEYWORD_OVERLAP_AT])) / KEYWORD_OVERLAP_AT
    asked, n = ROUNDS * len(questions), len(questions)
    rows += [
        ("same top passage as FAISS", "—", f"{same_top / asked:.3f}"),
        ("same answer as FAISS", "—", f"{same_answer / asked:.3f}"),
        ("same best BM25 passage as bm25s", "—", f"{same_keyword / n:.3f}"),
        (f"BM25 top-{KEYWORD_OVERLAP_AT} overlap with bm25s", "—", f"{keyword_overlap / n:.3f}"),
    ]
    for name, pick in (("ask() median", 0), ("ask() p95", 1)):
        rows.append((name, *(f"{percentiles(latency[p])[pick]:.1f} ms" for p in (faiss, milvus))))
    return rows


def cmrc_rows(faiss: Pipeline, work: Path) -> list[tuple[str, str, str]]:
    """(measure, FAISS, Milvus) rows on CMRC 2018 dev, weighted fusion."""
    settings, model = faiss.settings, faiss.model
    index, questions, vectors = prepared(CMRC, settings, model)
    copy = milvus_copy(replace(settings, index=set_folder(CMRC, settings.backend)), work / CMRC)
    corpus, _ = load(CMRC, settings.max_passage_chars)
    encode = partial(encode_passages, model, batch_size=settings.batch_size)
    build_index(corpus, copy.index, settings.model, index.manifest["model_fingerprint"], encode, index.manifest["corpus_fingerprint"],
                settings.max_passage_chars, settings.dense, copy.store)
    results = [evaluate_cmrc(ix, questions, vectors, settings, faiss.reader, "weighted") for ix in (index, load_index(copy.index))]
    return [(f"CMRC 2018 dev {m} ({len(questions)})", *(f"{r[m]:.3f}" for r in results)) for m in CMRC_MEASURES]


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cmrc", action="store_true", help="also CMRC 2018 dev (indexed once, 10+ minutes)")
    args = parser.parse_args(argv)
    faiss = Pipeline()
    faiss.ensure_index(progress=False)
    with tempfile.TemporaryDirectory(prefix="stores-") as work:
        milvus = Pipeline(milvus_copy(faiss.settings, Path(work)), model=faiss.model)
        milvus.ensure_index(progress=False)
        rows = seed_rows(faiss, milvus)
        if args.cmrc and available(CMRC):
            rows += cmrc_rows(faiss, Path(work))
    print(f"seed dev set: {len(load_dev_set())} questions × {ROUNDS} rounds for agreement and latency")
    print_table([dict(zip(("measure", "FAISS + bm25s (default)", "Milvus (milvus-lite)"), row)) for row in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
