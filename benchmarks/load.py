"""Load on the running app: many concurrent askers over HTTP, each answer checked against ask() in this process.

Run by hand: `python -m benchmarks.load [--askers 100] [--questions 3]`; starts `python app.py` on a free loopback port
over its own copy of the seeds and index (RAG_* variables in the environment reach the app, e.g. RAG_TORCH_THREADS),
then every asker asks its questions one after another, all askers at once, through each route in turn: the app's plain
JSON route (`POST /api/ask`) and Gradio's HTTP API (`/gradio_api/call/ask`, what gradio_client's
`predict(question, 5, api_name="/ask")` uses). Prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from benchmarks.seed_dev import load_dev_set
from rag import Pipeline, Settings
from rag.config import PROJECT_ROOT

TOP_K = 5
STARTUP_TIMEOUT_S = 600
REQUEST_TIMEOUT_S = 120  # one question, queueing included
DEADLINE_S = 900  # the whole load, whatever happens
API = "/api/ask"  # app.ASK_ROUTE
GRADIO_API = "gradio_api/call/ask"


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_app(seeds: Path, index: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`python app.py` over the given seeds and index; returns once its page answers."""
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "app.py"), "--port", str(port), "--seeds", str(seeds),
                             "--index", str(index)], cwd=PROJECT_ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"app.py exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(1)
    proc.kill()
    sys.exit(f"app.py did not answer within {STARTUP_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def ask_gradio(client: httpx.Client, url: str, question: str) -> dict:
    """One question through Gradio's API: post it, then read the event stream until the result."""
    posted = client.post(f"{url}{GRADIO_API}", json={"data": [question, TOP_K]})
    posted.raise_for_status()
    event_id = posted.json()["event_id"]
    event = ""
    with client.stream("GET", f"{url}{GRADIO_API}/{event_id}") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                data = json.loads(line.removeprefix("data:").strip())
                if event == "error":
                    raise RuntimeError(f"the app answered with an error: {data}")
                return data[0]
    raise RuntimeError("the event stream ended without a result")


def ask_api(client: httpx.Client, url: str, question: str) -> dict:
    """One question through the app's plain JSON route."""
    reply = client.post(f"{url}{API.lstrip('/')}", json={"question": question, "top_k": TOP_K})
    reply.raise_for_status()
    return reply.json()


ROUTES = {"api": (ask_api, f"`{API}`"), "gradio": (ask_gradio, f"Gradio `/{GRADIO_API}`")}


@dataclass(frozen=True)
class Load:
    """What one load run measured."""

    correct: int
    total: int
    failures: tuple[str, ...]
    latencies_ms: tuple[float, ...]
    wall_s: float
    rss_before: float
    rss_after: float


def run_load(url: str, pid: int, plan: list[list[str]], reference: dict[str, dict], ask: Callable[[httpx.Client, str, str], dict]) -> Load:
    """Every asker asks its questions one after another, all askers at once; each answer compared with the reference."""
    rss_before = rss_mib(pid)
    latencies: list[float] = []
    failures: list[str] = []
    correct = 0
    lock = threading.Lock()
    barrier = threading.Barrier(len(plan))
    limits = httpx.Limits(max_connections=2 * len(plan), max_keepalive_connections=2 * len(plan))
    with httpx.Client(timeout=REQUEST_TIMEOUT_S, limits=limits) as client:

        def asker(questions: list[str]) -> None:
            nonlocal correct
            barrier.wait()
            for question in questions:
                started = time.perf_counter()
                try:
                    answer = ask(client, url, question)
                except Exception as error:  # noqa: BLE001 - counted as a failure
                    with lock:
                        failures.append(f"{type(error).__name__}: {error}")
                    continue
                elapsed = time.perf_counter() - started
                expected = reference[question]
                same = (answer["answer"], answer["abstained"]) == (expected["answer"], expected["abstained"])
                with lock:
                    latencies.append(elapsed * 1000)
                    correct += same
                    if not same:
                        failures.append(f"different answer to {question!r}")

        threads = [threading.Thread(target=asker, args=(qs,), daemon=True) for qs in plan]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(0.0, DEADLINE_S - (time.perf_counter() - started)))
        wall = time.perf_counter() - started
    return Load(correct, sum(map(len, plan)), tuple(failures), tuple(latencies), wall, rss_before, rss_mib(pid))


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.splitlines()[0])
    parser.add_argument("--askers", type=int, default=100)
    parser.add_argument("--questions", type=int, default=3, help="questions each asker asks, one after another")
    parser.add_argument("--routes", nargs="+", choices=sorted(ROUTES), default=["api", "gradio"], help="measured one after another")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]  # other work on the machine skews every figure: say how much there was
    pool = [q.question for q in load_dev_set()]
    plan = [[pool[(a * args.questions + i) % len(pool)] for i in range(args.questions)] for a in range(args.askers)]

    with tempfile.TemporaryDirectory(prefix="rag-load-") as tmp:
        seeds, index = Path(tmp) / "seeds", Path(tmp) / "index"
        shutil.copytree(PROJECT_ROOT / "seeds", seeds)
        if (PROJECT_ROOT / "index").is_dir():
            shutil.copytree(PROJECT_ROOT / "index", index, ignore=shutil.ignore_patterns(".lock", "feedback.jsonl"))
        reference_pipeline = Pipeline(Settings.from_env(seeds=seeds, index=index, seed_check_seconds=0))
        wanted = {q for qs in plan for q in qs}
        reference = {q: reference_pipeline.ask(q, TOP_K).to_dict() for q in sorted(wanted)}
        del reference_pipeline

        proc, url = start_app(seeds, index, Path(tmp) / "app.log")
        try:
            loads = {route: run_load(url, proc.pid, plan, reference, ROUTES[route][0]) for route in args.routes}
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    knobs = {k: v for k, v in os.environ.items() if k.startswith("RAG_")}
    print(f"{args.askers} askers × {args.questions} questions, all at once; app settings from the environment: {knobs or 'defaults'}; "
          f"load average before: {load_before:.1f}\n")
    print("| measure | " + " | ".join(ROUTES[r][1] for r in loads) + " |\n|---|" + "---|" * len(loads))
    rows = {
        "correct answers (same as ask())": lambda m: f"{m.correct}/{m.total} ({m.correct / m.total:.0%})",
        "failures (errors, timeouts, different answers)": lambda m: str(len(m.failures)),
        "latency median / p95 / max": lambda m: "{:.0f} / {:.0f} / {:.0f} ms".format(
            statistics.median(m.latencies_ms or [float("nan")]), np.percentile(m.latencies_ms or [float("nan")], 95), max(m.latencies_ms or [float("nan")])),
        "throughput": lambda m: f"{len(m.latencies_ms) / m.wall_s:.1f} questions/s ({m.wall_s:.1f} s for all)",
        "server RSS before → after": lambda m: f"{m.rss_before:.0f} → {m.rss_after:.0f} MiB",
    }
    for name, cell in rows.items():
        print(f"| {name} | " + " | ".join(cell(m) for m in loads.values()) + " |")
    for failure in sorted({f for m in loads.values() for f in m.failures})[:5]:
        print(f"\n- {failure}", end="")
    print()
    return 0 if all(m.correct == m.total for m in loads.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
