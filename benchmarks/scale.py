"""Scale: indexes of 10⁴, 10⁵ and 10⁶ passages built, loaded and asked, each step in its own process; a markdown table.

Run by hand: `python -m benchmarks.scale [--sizes N ...] [--work DIR]` (default 10⁴ 10⁵ 10⁶; the 10⁶ row takes an hour
or more on 2 cores, most of it jieba and the HNSW graph). The text is real: passages of the seed corpus, CMRC 2018 dev
and DRCD (../shared/data), each indexed passage one of them with a sentence of another appended. SAMPLE_PASSAGES of
them, and as many sentences, are embedded by the real model: that gives the embedding rate, and the vectors. Every
indexed vector is one of those real vectors, picked by its text's hash, plus a random perturbation, renormalised
(embedding a million passages and five million sentences would take days here); the embedding column is the number
of texts at the measured rate. Questions: the 168 seed dev questions and the first 32 of CMRC 2018 dev.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import faiss
import numpy as np

import rag.index
from benchmarks import qa_sets
from benchmarks.seed_dev import load_dev_set
from rag.config import Settings
from rag.corpus import Article, Corpus, Passage, load_corpus
from rag.dense import build_dense, dense_kind, set_search
from rag.index import build_index, load_index, passage_text_for_embedding
from rag.model import encode_passages, encode_queries, load_model, model_fingerprint
from rag.pipeline import Pipeline

SIZES = (10_000, 100_000, 1_000_000)
SAMPLE_PASSAGES = 512
PASSAGES_PER_ARTICLE = 20
SENTENCES_KEPT = 4  # of the sample passage's, before the appended one: about five sentences a passage
PERTURBATION = 0.5  # norm of the random part before renormalising: a perturbed copy keeps cosine ≈ 0.9 to its source
CMRC_QUESTIONS = 32
RECALL_AT = 10
EF_SEARCH_SWEEP = (1, 2, 4)  # --step dense also measures recall at these multiples of Settings.dense.hnsw_ef_search
EXACT_ROWS = 131_072  # rows scored at a time by the exact search
SEED = 0


class Clock:
    """Seconds spent in wrapped functions, by name."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def wrap(self, name: str, fn):
        """fn, timed into self.seconds[name]."""
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
        return timed


def memory_mib(field: str = "VmHWM") -> float:
    """A memory figure of this process from /proc: VmHWM, the peak resident memory (unlike getrusage's, not inherited
    from the parent across exec), counts the pages of memory-mapped files read; RssAnon, memory of its own only."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith(f"{field}:")).split()[1]) / 1024


def prepare_sample(work: Path, settings: Settings) -> dict:
    """Real passages (seed, CMRC 2018 dev, DRCD) and the real model's vectors of a sample of them; the embedding rates."""
    corpora = [load_corpus(settings.seeds, settings.max_passage_chars)]
    corpora += [qa_sets.load(name, settings.max_passage_chars)[0] for name in ("cmrc-dev", "drcd") if qa_sets.available(name)]
    articles = {a.id: a for c in corpora for a in c.articles}
    seed = [p for p in corpora[0].passages if p.sentences]
    others = [p for c in corpora[1:] for p in c.passages if p.sentences]
    rng = random.Random(SEED)
    sample = seed + rng.sample(others, SAMPLE_PASSAGES - len(seed))
    texts = [passage_text_for_embedding(p, articles[p.article_id]) for p in sample]
    sentences = [rng.choice(p.sentences) for p in sample]
    model = load_model(settings.model, settings.backend)
    started = time.perf_counter()
    vectors = encode_passages(model, texts, batch_size=settings.batch_size)
    passage_rate = len(texts) / (time.perf_counter() - started)
    started = time.perf_counter()
    vectors = np.vstack([vectors, encode_passages(model, sentences, batch_size=settings.batch_size)])
    sentence_rate = len(sentences) / (time.perf_counter() - started)
    np.save(work / "sample_vectors.npy", vectors)
    about = {"passage_rate": passage_rate, "sentence_rate": sentence_rate,
             "titles": [articles[p.article_id].title for p in sample], "passages": [asdict(p) for p in sample]}
    (work / "sample.json").write_text(json.dumps(about, ensure_ascii=False), encoding="utf-8")
    return about


def synthetic_corpus(sample: dict, n: int) -> Corpus:
    """n passages: each a sample passage's first sentences and a sentence of another, PASSAGES_PER_ARTICLE to an article."""
    rng = random.Random(SEED)
    passages, articles = sample["passages"], []
    out = []
    for row in range(n):
        base, other = rng.randrange(len(passages)), rng.randrange(len(passages))
        sentences = tuple(passages[base]["sentences"][:SENTENCES_KEPT]) + (rng.choice(passages[other]["sentences"]),)
        article = f"synthetic_{row // PASSAGES_PER_ARTICLE}#1"
        if row % PASSAGES_PER_ARTICLE == 0:
            articles.append(Article(article, sample["titles"][base], (), f"synthetic_{row // PASSAGES_PER_ARTICLE}.txt"))
        out.append(Passage(f"{article}:{row % PASSAGES_PER_ARTICLE + 1}.1", article, articles[-1].source,
                           passages[base]["section"], row % PASSAGES_PER_ARTICLE + 1, "".join(sentences), sentences))
    return Corpus(tuple(articles), tuple(out), tuple(a.source for a in articles), ())


def perturbed(vectors: np.ndarray, picks: list[int] | np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The picked rows of vectors, each plus a random perturbation of norm PERTURBATION, renormalised."""
    noise = rng.standard_normal((len(picks), vectors.shape[1]), dtype=np.float32)
    out = vectors[picks] + PERTURBATION * noise / np.linalg.norm(noise, axis=1, keepdims=True)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def perturbed_encoder(vectors: np.ndarray):
    """An encoder giving each text a real vector (picked by the text's hash) plus a random perturbation, renormalised."""
    rng = np.random.default_rng(SEED)

    def encode(texts: list[str]) -> np.ndarray:
        return perturbed(vectors, [int.from_bytes(hashlib.sha1(t.encode()).digest()[:8], "little") % len(vectors) for t in texts], rng)
    return encode


def index_dir(work: Path, n: int) -> Path:
    """Where the index of n passages is built."""
    return work / f"index-{n}"


def build_step(work: Path, n: int, settings: Settings) -> dict:
    """Build the index of n passages; seconds by part, peak memory, size on disk."""
    sample = json.loads((work / "sample.json").read_text(encoding="utf-8"))
    corpus = synthetic_corpus(sample, n)
    shutil.rmtree(index_dir(work, n), ignore_errors=True)  # a cold build: nothing reused
    clock = Clock()
    rag.index.corpus_tokens = clock.wrap("tokenise", rag.index.corpus_tokens)
    rag.index.build_dense = clock.wrap("dense", rag.index.build_dense)
    encode = clock.wrap("encode", perturbed_encoder(np.load(work / "sample_vectors.npy")))
    started = time.perf_counter()
    report = build_index(corpus, index_dir(work, n), settings.model, model_fingerprint(settings.model, settings.backend),
                         encode, "synthetic", settings.max_passage_chars, settings.dense, processes=settings.build_processes)
    seconds = time.perf_counter() - started
    build = index_dir(work, n) / (index_dir(work, n) / rag.index.CURRENT).read_text()
    return {"passages": report.passages, "sentences": report.sentences,
            "embed_s": report.passages / sample["passage_rate"] + report.sentences / sample["sentence_rate"],
            "rest_s": seconds - clock.seconds["encode"], "tokenise_s": clock.seconds["tokenise"], "dense_s": clock.seconds["dense"],
            "build_peak_mib": memory_mib(), "disk_mib": sum(p.stat().st_size for p in build.rglob("*") if p.is_file()) / 2**20}


def first_load_step(work: Path, n: int, settings: Settings) -> dict:
    """The first load after the build: every file hashed once."""
    started = time.perf_counter()
    index = load_index(index_dir(work, n))
    return {"first_load_s": time.perf_counter() - started, "dense": index.manifest["dense"]}


def exact_top(dense: faiss.Index, queries: np.ndarray, k: int) -> np.ndarray:
    """The rows of the k best inner products of each query over the index's stored vectors, exhaustively, a block at a time."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, dense.ntotal, EXACT_ROWS):
        scores = queries @ dense.reconstruct_n(start, min(EXACT_ROWS, dense.ntotal - start)).T
        rows = np.arange(start, start + scores.shape[1])
        best_scores = np.hstack([best_scores, scores])
        best_rows = np.hstack([best_rows, np.broadcast_to(rows, scores.shape)])
        keep = np.argpartition(-best_scores, k - 1, axis=1)[:, :k]
        best_scores, best_rows = np.take_along_axis(best_scores, keep, 1), np.take_along_axis(best_rows, keep, 1)
    return best_rows


def questions(settings: Settings) -> list[str]:
    """The seed dev questions and the first CMRC_QUESTIONS of CMRC 2018 dev."""
    asked = [q.question for q in load_dev_set()]
    if qa_sets.available("cmrc-dev"):
        asked += [q.text for q in qa_sets.load("cmrc-dev", settings.max_passage_chars)[1][:CMRC_QUESTIONS]]
    return asked


def recall(dense: faiss.Index, queries: np.ndarray, exact: np.ndarray | None = None) -> float:
    """The share of the exact RECALL_AT nearest passages (given, or found exhaustively) that the index's search finds."""
    _, found = dense.search(queries, RECALL_AT)
    exact = exact_top(dense, queries, RECALL_AT) if exact is None else exact
    return float(np.mean([len(set(a) & set(e)) / RECALL_AT for a, e in zip(found.tolist(), exact.tolist())]))


def serve_step(work: Path, n: int, settings: Settings) -> dict:
    """A later load (hashes skipped), ask() over the questions, peak memory, then dense recall against exact search."""
    asked = questions(settings)
    pipeline = Pipeline(replace(settings, index=index_dir(work, n), seeds=work / "no-seeds", seed_check_seconds=0))
    _ = pipeline.model, pipeline.reader
    started = time.perf_counter()
    index = pipeline.ensure_index(progress=False)
    load_s = time.perf_counter() - started
    pipeline.ask(asked[0])  # warm-up
    ask_ms, embed_ms = [], []
    for question in asked:
        started = time.perf_counter()
        pipeline.ask(question)
        answered = time.perf_counter()
        encode_queries(pipeline.model, [question])
        ask_ms.append((answered - started) * 1000)
        embed_ms.append((time.perf_counter() - answered) * 1000)
    peak, anon = memory_mib(), memory_mib("RssAnon")
    return {"load_s": load_s, "ask_p50_ms": statistics.median(ask_ms), "ask_p95_ms": float(np.percentile(ask_ms, 95)),
            "embed_p50_ms": statistics.median(embed_ms),
            "questions": len(asked), "serve_peak_mib": peak, "serve_anon_mib": anon, "recall": recall(index.dense, encode_queries(pipeline.model, asked))}


def dense_step(work: Path, n: int, settings: Settings) -> dict:
    """The dense index alone, n perturbed vectors: build time, search time, peak memory and recall (no text, no BM25)."""
    sample, rng = np.load(work / "sample_vectors.npy"), np.random.default_rng(SEED)
    vectors = np.vstack([perturbed(sample, rng.integers(len(sample), size=min(EXACT_ROWS, n - start)), rng)
                         for start in range(0, n, EXACT_ROWS)])
    started = time.perf_counter()
    dense = build_dense(vectors, settings.dense)
    build_s = time.perf_counter() - started
    del vectors
    queries = encode_queries(load_model(settings.model, settings.backend, settings.onnx_threads), questions(settings))
    exact = exact_top(dense, queries, RECALL_AT)
    result = {"passages": n, "dense": dense_kind(n, settings.dense), "dense_build_s": build_s, "peak_mib": memory_mib()}
    for times in EF_SEARCH_SWEEP:
        ef_search = settings.dense.hnsw_ef_search * times
        set_search(dense, replace(settings.dense, hnsw_ef_search=ef_search))
        started = time.perf_counter()
        for query in queries:
            dense.search(query.reshape(1, -1), settings.depth)
        result[f"search_ms@{ef_search}"] = (time.perf_counter() - started) * 1000 / len(queries)
        result[f"recall@{ef_search}"] = recall(dense, queries, exact)
    return result


STEPS = {"build": build_step, "first-load": first_load_step, "serve": serve_step}  # one size's row, in this order


def row(n: int, r: dict) -> str:
    """One markdown table row."""
    return (f"| {n:,} ({r['sentences']:,} sentences) | {r['embed_s'] / 60:.0f} min (est.) | {r['rest_s']:.0f} s "
            f"(jieba {r['tokenise_s']:.0f} s, {r['dense']} {r['dense_s']:.0f} s) | {r['build_peak_mib']:,.0f} MiB | "
            f"{r['disk_mib']:,.0f} MiB | {r['first_load_s']:.1f} s / {r['load_s']:.2f} s | "
            f"{r['ask_p50_ms']:.1f} / {r['ask_p95_ms']:.1f} ms ({r['embed_p50_ms']:.1f}) | {r['serve_peak_mib']:,.0f} MiB "
            f"({r['serve_anon_mib']:,.0f} MiB) | "
            f"{r['recall']:.3f} |")


HEADER = ("| passages | embedding | build, the rest | build peak RSS | on disk | load: first (hashes) / later "
          "| ask() p50 / p95 (bare question embedding p50) | serving peak RSS (its own memory after the questions) | dense recall@10 |\n|---|---|---|---|---|---|---|---|---|")


def main(argv: list[str]) -> int:
    """Prepare the sample once, then each size: build, first load and serving, each in its own process."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--work", type=Path, default=Path("/tmp/rag-scale"), help="where the indexes are built (kept)")
    parser.add_argument("--step", choices=[*STEPS, "dense"],
                        help="run one step of the first size here and print its JSON; dense: the dense index alone")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.step:
        print(json.dumps({**STEPS, "dense": dense_step}[args.step](args.work, args.sizes[0], settings)))
        return 0
    if not (args.work / "sample.json").is_file():
        prepare_sample(args.work, settings)
    rows = []
    for n in args.sizes:
        result = {}
        for step in STEPS:
            child = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--work", str(args.work), "--sizes", str(n), "--step", step],
                                   stdout=subprocess.PIPE, text=True, check=True)
            result.update(json.loads(child.stdout.strip().splitlines()[-1]))
        rows.append(row(n, result))
        with (args.work / "results.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps({"passages": n, **result}) + "\n")
        print(rows[-1], file=sys.stderr, flush=True)
    print(HEADER + "\n" + "\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
