"""ask() latency: median and p95 over the seed dev questions after warm-up, beside the bare query embedding,
and the cold start from process start to the first answer.

Run by hand: `python -m benchmarks.latency` (needs the index: `python -m rag.build`).
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time

import numpy as np

from benchmarks.seed_dev import load_dev_set
from rag.config import PROJECT_ROOT
from rag.model import encode_queries
from rag.pipeline import Pipeline

ROUNDS = 3
COLD_START = "import time; t = time.perf_counter(); from rag import ask; ask('如何释放被抑制的消费需求？'); print(time.perf_counter() - t)"


def percentiles(samples: list[float]) -> tuple[float, float]:
    """Median and 95th percentile."""
    return statistics.median(samples), float(np.percentile(samples, 95))


def main() -> int:
    """Measure and print the table."""
    questions = [q.question for q in load_dev_set()]
    pipeline = Pipeline()
    pipeline.ask(questions[0])  # warm-up: loads model and index
    ask_ms, embed_ms = [], []
    for _ in range(ROUNDS):
        for q in questions:
            started = time.perf_counter()
            pipeline.ask(q)
            ask_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            encode_queries(pipeline.model, [q])
            embed_ms.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    inner = subprocess.run([sys.executable, "-c", COLD_START], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    cold = time.perf_counter() - started
    ask_median, ask_p95 = percentiles(ask_ms)
    embed_median, embed_p95 = percentiles(embed_ms)
    print(f"{len(questions)} questions × {ROUNDS} rounds")
    print("| measure | median | p95 |\n|---|---|---|")
    print(f"| ask() | {ask_median:.1f} ms | {ask_p95:.1f} ms |")
    print(f"| bare query embedding | {embed_median:.1f} ms | {embed_p95:.1f} ms |")
    print(f"| overhead ratio (ask / embedding) | {ask_median / embed_median:.2f} | {ask_p95 / embed_p95:.2f} |")
    print(f"| cold start, process start → first answer | {cold:.1f} s | (import → answer {float(inner.stdout.split()[-1]):.1f} s) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
