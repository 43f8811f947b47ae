"""The embedding backends side by side: build throughput, query latency, cold start, agreement with torch, answers.

Run by hand: `python -m benchmarks.backends` (after `python -m rag.model`). Every backend builds the seed corpus into
its own temporary index (cold, rounds interleaved), embeds the seed dev questions (interleaved question by question, so
a busy machine slows every backend alike), is compared with the torch fp32 vectors, answers the seed dev set from its
own index, and answers one question in a fresh process (cold start). Prints one table; medians throughout.
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.latency import COLD_START, percentiles
from benchmarks.seed_dev import evaluate, load_dev_set
from rag.config import BACKENDS, PROJECT_ROOT, Settings
from rag.index import load_index
from rag.model import default_model_dir, encode_queries, load_model
from rag.onnx_encoder import load_encoder
from rag.onnx_export import INT8_FILE
from rag.pipeline import Pipeline

BUILD_ROUNDS = 3
QUERY_ROUNDS = 3
COLD_ROUNDS = 3
REFERENCE = "torch"
INT8_QUESTIONS = "onnx-int8, questions int8 too"  # measured to show why questions stay fp32; not a setting
ANSWER_MEASURES = ("accuracy answerable", "unanswerables declined", "answerables wrongly declined")


def index_vectors(index_dir: Path) -> np.ndarray:
    """Every passage and sentence vector of a built index, in the corpus's order."""
    index = load_index(index_dir)
    return np.vstack([index.dense.reconstruct_n(0, index.dense.ntotal), index.sentence_vectors])


def cold_start(settings: Settings) -> float:
    """Seconds from process start to the first answer, in a fresh process with this backend and index."""
    env = {**os.environ, "RAG_BACKEND": settings.backend, "RAG_INDEX": str(settings.index), "RAG_SEEDS": str(settings.seeds)}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", COLD_START], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - started


def answers(pipeline: Pipeline) -> dict[str, float]:
    """The seed dev set's answer measures through this pipeline."""
    results = evaluate(pipeline, load_dev_set())
    return {name: next(v for k, (v, _) in results.items() if k.startswith(name)) for name in ANSWER_MEASURES}


def main() -> int:
    """Measure every backend and print the table."""
    base = Settings.from_env()
    load = os.getloadavg()  # a busy machine slows torch far more than onnxruntime: say how busy it was
    questions = [q.question for q in load_dev_set()]
    with tempfile.TemporaryDirectory() as tmp:
        seeds = Path(tmp) / "seeds"
        shutil.copytree(base.seeds, seeds)
        settings = {b: replace(base, seeds=seeds, index=Path(tmp) / f"index-{b}", backend=b) for b in BACKENDS}
        models = {b: load_model(s.model, b, s.onnx_threads) for b, s in settings.items()}
        onnx_dir = default_model_dir() / "onnx"
        models[INT8_QUESTIONS] = load_encoder(default_model_dir(), onnx_dir / INT8_FILE, onnx_dir / INT8_FILE)
        settings[INT8_QUESTIONS] = settings["onnx-int8"]

        rates: dict[str, list[float]] = {b: [] for b in BACKENDS}
        for _ in range(BUILD_ROUNDS):
            for b in BACKENDS:
                shutil.rmtree(settings[b].index, ignore_errors=True)
                report = Pipeline(settings[b], model=models[b]).build(progress=False)
                rates[b].append(report.embedded / report.seconds)
        rates[INT8_QUESTIONS] = rates["onnx-int8"]

        latency: dict[str, list[float]] = {name: [] for name in models}
        for name, model in models.items():
            encode_queries(model, questions[:1])  # warm-up
        for _ in range(QUERY_ROUNDS):
            for q in questions:
                for name, model in models.items():
                    started = time.perf_counter()
                    encode_queries(model, [q])
                    latency[name].append((time.perf_counter() - started) * 1000)

        reference_passages = index_vectors(settings[REFERENCE].index)
        reference_questions = encode_queries(models[REFERENCE], questions)
        cold = {b: statistics.median(cold_start(settings[b]) for _ in range(COLD_ROUNDS)) for b in BACKENDS}
        rows = []
        for name, model in models.items():
            s = settings[name]
            passages = float((index_vectors(s.index) * reference_passages).sum(axis=1).mean())
            asked = float((encode_queries(model, questions) * reference_questions).sum(axis=1).mean())
            rows.append((name, statistics.median(rates[name]), *percentiles(latency[name]), cold.get(name), passages, asked,
                         answers(Pipeline(s, model=model))))

    torch_rate, torch_answers = rows[0][1], rows[0][-1]
    print(f"{len(questions)} questions × {QUERY_ROUNDS} rounds; builds of the seed corpus × {BUILD_ROUNDS}; "
          f"cold starts × {COLD_ROUNDS}; {os.cpu_count()} cores, load average {load[0]:.1f} before and {os.getloadavg()[0]:.1f} "
          "after (other processes); medians")
    print("| backend | build texts/s | × torch | query median | query p95 | cold start | cosine to torch, passages | "
          "cosine to torch, questions | " + " | ".join(f"seed dev {m}" for m in ANSWER_MEASURES) + " | largest change |")
    print("|---" * (9 + len(ANSWER_MEASURES)) + "|")
    for name, rate, median, p95, cold_s, passages, asked, measures in rows:
        change = max(abs(measures[m] - torch_answers[m]) for m in ANSWER_MEASURES)
        cold_text = f"{cold_s:.1f} s" if cold_s is not None else "—"
        print(f"| {name} | {rate:.1f} | {rate / torch_rate:.2f} | {median:.1f} ms | {p95:.1f} ms | {cold_text} | "
              f"{passages:.4f} | {asked:.4f} | " + " | ".join(f"{measures[m]:.3f}" for m in ANSWER_MEASURES) + f" | {change:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
