"""Faults a hostile user or a careless operator causes, each on its own copy of the seeds and of a built index.

Run by hand: `python -m benchmarks.faults [--all-seeds] [CASE ...]` (about 20 minutes on a busy 2-core machine; prints
a table; names of cases, or parts of them, run only those). Every case runs the real commands in subprocesses
(`python -m rag.build`, `python -m rag ask`, a `rag.Pipeline` answering the reference questions), then counts: answers
that differ from a clean build of the same seeds (or, where a stale index is served by design, from the good index),
tracebacks in any output, and leftover folders in the index folder after the next build. Permission cases run as root
without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH (`setpriv`), which obeys file modes as an unprivileged user does; they
are skipped when `setpriv` cannot drop those capabilities.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from benchmarks.seed_dev import load_dev_set
from rag import Pipeline, Settings
from rag.config import PROJECT_ROOT
from rag.index import BM25_DIR, BUILD_NAME, CURRENT, LOCK, PASSAGE_INDEX, SENTENCE_VECTORS, IndexUnavailable, load_index
from rag.records import PASSAGES
from rag.model import load_model

PYTHON = sys.executable
CHANGED_SEED = "003_4fcd156b4d347718.txt"
# Two of the five seed files by default: a damaged index is rebuilt without reusing a vector, and the whole corpus
# takes a minute or more to embed on 2 cores each time; --all-seeds uses all five.
SEED_SUBSET = ("002_a147e2a058174e8e.txt", CHANGED_SEED)
QUESTIONS_PER_FILE = 3
NEW_PARAGRAPH = "\n\n量子通信网络建设应当纳入城市韧性规划。\n"
CONCURRENT_BUILD_RUNS = 3
KILL_RUNS = 12
KILL_WRITE_WINDOW_S = 0.3  # half the kills land within this of the new build folder appearing (the write and switch)
POLL_S = 0.005
TIMEOUT_S = 600
TRACEBACK = "Traceback (most recent call last)"
UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
KEPT = {CURRENT, LOCK, "feedback.jsonl"}
# A fresh process answers the reference questions through the public API; one JSON line out (ASCII: any surrogate survives).
ASK_SNIPPET = """
import json, sys
from pathlib import Path
from rag import Pipeline, Settings
pipeline = Pipeline(Settings(seeds=Path(sys.argv[1]), index=Path(sys.argv[2])))
out = []
for question in json.loads(sys.stdin.read()):
    try:
        a = pipeline.ask(question)
        out.append({"answer": a.answer, "abstained": a.abstained, "notice": a.notice})
    except (ValueError, TypeError) as error:
        out.append({"error": str(error)})
print(json.dumps(out))
"""


@dataclass
class Row:
    """One case's line of the table."""

    case: str
    outcomes: Counter = field(default_factory=Counter)
    wrong: int = 0
    tracebacks: int = 0
    leftovers: int = 0
    notes: list[str] = field(default_factory=list)

    def cells(self) -> list[str]:
        """The table cells."""
        outcome = ", ".join(f"{k} ×{v}" if v > 1 else k for k, v in self.outcomes.items())
        return [self.case, outcome, str(self.wrong), str(self.tracebacks), str(self.leftovers), "; ".join(self.notes)]


def run(cmd: list[str], *, stdin: str | None = None, unprivileged: bool = False) -> subprocess.CompletedProcess:
    """Run a command from the project root, capturing its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run((UNPRIVILEGED if unprivileged else []) + cmd, input=stdin, capture_output=True,
                          text=True, cwd=PROJECT_ROOT, env=env, timeout=TIMEOUT_S, errors="replace")


def build_cmd(seeds: Path, index: Path) -> list[str]:
    """`python -m rag.build` for a workspace."""
    return [PYTHON, "-m", "rag.build", "--seeds", str(seeds), "--index", str(index)]


def tracebacks(*outputs: str) -> int:
    """Tracebacks printed in any of the outputs."""
    return sum(o.count(TRACEBACK) for o in outputs if o)


def active(index: Path) -> str | None:
    """The build CURRENT names, or None when there is no readable pointer."""
    try:
        return (index / CURRENT).read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        return None


def leftovers(index: Path) -> int:
    """What a build should have cleaned away: temp builds and pointers, and builds beyond the active and previous."""
    entries = list(index.iterdir())
    builds = [p for p in entries if p.is_dir() and BUILD_NAME.match(p.name)]
    stray = [p for p in entries if p.name not in KEPT and p not in builds]
    return len(stray) + max(0, len(builds) - 2)


def key(answer: dict) -> tuple:
    """What must match between two answers."""
    return ("error", answer["error"]) if "error" in answer else (answer["answer"], answer["abstained"])


def digest(seeds: Path) -> str:
    """A hash of a seed folder's file names and bytes (readable ones)."""
    h = hashlib.sha256()
    for p in sorted(seeds.iterdir()):
        h.update(p.name.encode() + b"\0" + (p.read_bytes() if p.is_file() else b"") + b"\0")
    return h.hexdigest()


class Bench:
    """The good index, the reference questions and their answers, and fresh workspaces for the cases."""

    def __init__(self, root: Path, files: tuple[str, ...] | None):
        self.root = root
        self.model = load_model(Settings.from_env().model)
        self.seeds = root / "seeds"
        shutil.copytree(PROJECT_ROOT / "seeds", self.seeds, ignore=lambda d, names: [n for n in names if files and n not in files])
        self.questions = self._questions({p.name for p in self.seeds.iterdir()})
        self.good = root / "good"
        if (PROJECT_ROOT / "index").is_dir():  # its vectors are reused: the good index is built in seconds
            shutil.copytree(PROJECT_ROOT / "index", self.good, ignore=shutil.ignore_patterns(LOCK))
        Pipeline(Settings(seeds=self.seeds, index=self.good), model=self.model).build(progress=False)
        self._expected: dict[str, list[tuple]] = {}
        self.reference = self.expected(self.seeds)
        self.count = 0

    @staticmethod
    def _questions(files: set[str]) -> list[str]:
        """A few Chinese questions on each seed file, one English, two unanswerable: the reference questions."""
        chosen, seen = [], Counter()
        for q in load_dev_set():
            group = q.source if q.kind in ("keyword", "paraphrase") else q.kind
            if q.source in files | {""} and seen[group] < {"english": 1, "unanswerable": 2}.get(q.kind, QUESTIONS_PER_FILE):
                seen[group] += 1
                chosen.append(q.question)
        return chosen

    def workspace(self, index: bool = True) -> tuple[Path, Path]:
        """A fresh copy of the seeds and (if asked) of the good index."""
        self.count += 1
        home = self.root / f"case{self.count:02d}"
        shutil.copytree(self.seeds, home / "seeds")
        if index:
            shutil.copytree(self.good, home / "index")
        return home / "seeds", home / "index"

    def expected(self, seeds: Path) -> list[tuple]:
        """The reference answers from a clean build of these seeds (built in-process beside, reusing vectors)."""
        d = digest(seeds)
        if d not in self._expected:
            home = Path(tempfile.mkdtemp(dir=self.root, prefix="expected-"))
            shutil.copytree(seeds, home / "seeds")
            shutil.copytree(self.good, home / "index")
            pipeline = Pipeline(Settings(seeds=home / "seeds", index=home / "index", seed_check_seconds=0), model=self.model)
            pipeline.build(progress=False)
            self._expected[d] = [key({"answer": a.answer, "abstained": a.abstained}) for a in map(pipeline.ask, self.questions)]
        return self._expected[d]

    def ask(self, seeds: Path, index: Path, row: Row, unprivileged: bool = False, questions: list[str] | None = None) -> list[dict]:
        """Answers from a fresh process; tracebacks counted into the row."""
        done = run([PYTHON, "-c", ASK_SNIPPET, str(seeds), str(index)], stdin=json.dumps(questions or self.questions),
                   unprivileged=unprivileged)
        row.tracebacks += tracebacks(done.stdout, done.stderr)
        if done.returncode != 0:
            row.notes.append(f"ask exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
            return []
        return json.loads(done.stdout.strip().splitlines()[-1])

    def wrong(self, answers: list[dict], expected: list[tuple]) -> int:
        """Answers that differ from the expected ones (a missing answer counts as wrong)."""
        return sum(1 for i, e in enumerate(expected) if i >= len(answers) or key(answers[i]) != e)

    def ask_here(self, seeds: Path, index: Path, row: Row) -> list[dict]:
        """Answers from a pipeline in this process (sharing the loaded model); an exception counts as a traceback."""
        try:
            pipeline = Pipeline(Settings(seeds=seeds, index=index, seed_check_seconds=0), model=self.model)
            return [{"answer": a.answer, "abstained": a.abstained, "notice": a.notice} for a in map(pipeline.ask, self.questions)]
        except Exception as error:  # noqa: BLE001 - counted, not raised
            row.tracebacks += 1
            row.notes.append(f"ask raised {type(error).__name__}: {error}")
            return []

    def next_build(self, seeds: Path, index: Path, row: Row) -> None:
        """Build once more, as the next operator would, and count what is left lying in the index folder."""
        try:
            Pipeline(Settings(seeds=seeds, index=index, seed_check_seconds=0), model=self.model).build(progress=False)
        except Exception as error:  # noqa: BLE001 - counted, not raised
            row.tracebacks += 1
            row.notes.append(f"next build raised {type(error).__name__}: {error}")
        row.leftovers += leftovers(index)


# ---------------------------------------------------------------- the cases


def append_paragraph(seeds: Path) -> None:
    """Change a seed file the way an editor would."""
    path = seeds / CHANGED_SEED
    path.write_text(path.read_text(encoding="utf-8") + NEW_PARAGRAPH, encoding="utf-8")


def garble(path: Path, start: int | None = None, length: int = 1000) -> None:
    """Overwrite bytes inside a file with random ones (the size stays)."""
    data = bytearray(path.read_bytes())
    start = len(data) // 2 if start is None else start
    data[start:start + length] = random.Random(0).randbytes(len(data[start:start + length]))
    path.write_bytes(bytes(data))


def damage_case(bench: Bench, name: str, damage: Callable[[Path, Path], None]) -> Row:
    """Damage the index, ask from a fresh process: it must say so in a line, rebuild, and answer as before."""
    row = Row(name)
    seeds, index = bench.workspace()
    before = active(index)
    damage(seeds, index / before)
    answers = bench.ask(seeds, index, row)
    after = active(index)
    row.outcomes["clean rebuild" if after and after != before and answers else "previous build served" if answers else "error"] += 1
    row.wrong += bench.wrong(answers, bench.reference)
    bench.next_build(seeds, index, row)
    return row


def garble_npy(path: Path) -> None:
    """Random bytes over the data of a .npy file, past its header."""
    garble(path, start=max(128, path.stat().st_size // 2), length=min(4000, path.stat().st_size // 4))


def edit_records(build: Path) -> None:
    """Edit a passage's text in the records, leaving valid JSON."""
    lines = (build / PASSAGES).read_text(encoding="utf-8").splitlines(keepends=True)
    lines[3] = json.dumps({**json.loads(lines[3]), "text": "篡改过的文字：国家决定取消全部消费券。"}, ensure_ascii=False) + "\n"
    (build / PASSAGES).write_text("".join(lines), encoding="utf-8")


def largest_bm25_array(build: Path) -> Path:
    """The BM25 array a garbling most likely hits."""
    return max((p for p in (build / BM25_DIR).iterdir() if p.suffix == ".npy"), key=lambda p: p.stat().st_size)


def pointer_directory(index: Path) -> None:
    """CURRENT replaced by a directory with a file in it."""
    (index / CURRENT).unlink()
    (index / CURRENT).mkdir()
    (index / CURRENT / "build-x").write_text("x", encoding="utf-8")


DAMAGES: dict[str, Callable[[Path, Path], None]] = {
    "garbled passages.faiss": lambda seeds, build: garble(build / PASSAGE_INDEX),
    "garbled sentence_vectors.npy": lambda seeds, build: garble_npy(build / SENTENCE_VECTORS),
    "garbled BM25 arrays": lambda seeds, build: [garble_npy(p) for p in (build / BM25_DIR).iterdir() if p.suffix == ".npy"],
    "record text edited, valid JSON": lambda seeds, build: edit_records(build),
    "sentence_vectors.npy truncated to 0 bytes": lambda seeds, build: (build / SENTENCE_VECTORS).write_bytes(b""),
    "binary bytes in CURRENT": lambda seeds, build: (build.parent / CURRENT).write_bytes(b"\xff\xfe\x00\x9c build-\x01"),
    "CURRENT is a directory": lambda seeds, build: pointer_directory(build.parent),
}


def concurrent_builds(bench: Bench) -> Row:
    """Two `python -m rag.build` into one folder at once, after a seed change: both succeed, one index, no leftovers."""
    row = Row(f"two concurrent builds, one folder ({CONCURRENT_BUILD_RUNS} runs)")
    for _ in range(CONCURRENT_BUILD_RUNS):
        seeds, index = bench.workspace()
        before = active(index)
        append_paragraph(seeds)
        procs = [subprocess.Popen(build_cmd(seeds, index), cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        outputs = [p.communicate(timeout=TIMEOUT_S) for p in procs]
        row.tracebacks += tracebacks(*(o for pair in outputs for o in pair))
        failed = [p.returncode for p in procs if p.returncode != 0]
        row.outcomes["clear error" if failed else "clean rebuild" if active(index) != before else "previous build served"] += 1
        answers = bench.ask(seeds, index, row)
        row.wrong += bench.wrong(answers, bench.expected(seeds))
        bench.next_build(seeds, index, row)
    return row


def build_and_ask_on_stale(bench: Bench) -> Row:
    """A build runs while a fresh process asks on the stale index: it waits for the build and answers from it."""
    row = Row("build + concurrent ask on a stale index")
    seeds, index = bench.workspace()
    before = active(index)
    append_paragraph(seeds)
    build = subprocess.Popen(build_cmd(seeds, index), cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    answers = bench.ask(seeds, index, row)
    out, err = build.communicate(timeout=TIMEOUT_S)
    row.tracebacks += tracebacks(out, err)
    row.outcomes["clean rebuild" if build.returncode == 0 and active(index) != before else "error"] += 1
    row.wrong += bench.wrong(answers, bench.expected(seeds))
    bench.next_build(seeds, index, row)
    return row


def can_drop_privileges() -> bool:
    """Whether setpriv can run a command that file modes stop (as they stop an unprivileged user)."""
    if shutil.which("setpriv") is None:
        return False
    with tempfile.NamedTemporaryFile() as f:
        os.chmod(f.name, 0)
        return subprocess.run(UNPRIVILEGED + ["cat", f.name], capture_output=True).returncode != 0


def skipped_without_privilege_drop(row: Row) -> bool:
    """Mark a permission case skipped (and say why) where setpriv cannot drop the override capabilities."""
    if can_drop_privileges():
        return False
    row.outcomes["skipped"] += 1
    row.notes.append("setpriv cannot drop CAP_DAC_OVERRIDE here")
    return True


def unreadable_seed(bench: Bench) -> Row:
    """`chmod 000` on a seed file: the build skips it with a warning, answers from the rest, no rebuild loop."""
    row = Row("chmod 000 seed file (unprivileged)")
    if skipped_without_privilege_drop(row):
        return row
    seeds, index = bench.workspace()
    os.chmod(seeds / CHANGED_SEED, 0)
    done = run(build_cmd(seeds, index), unprivileged=True)
    row.tracebacks += tracebacks(done.stdout, done.stderr)
    skipped = "skipped 1 unreadable" in done.stdout and "Permission denied" in done.stderr
    row.outcomes["clean rebuild, file skipped" if done.returncode == 0 and skipped else "error"] += 1
    built = active(index)
    answers = bench.ask(seeds, index, row, unprivileged=True)
    if active(index) != built:
        row.notes.append("asking rebuilt again")
    without = bench.root / "without-unreadable"
    if not without.exists():
        shutil.copytree(seeds, without, ignore=shutil.ignore_patterns(CHANGED_SEED))
    row.wrong += bench.wrong(answers, bench.expected(without))
    os.chmod(seeds / CHANGED_SEED, 0o644)
    bench.next_build(seeds, index, row)
    return row


def read_only_index(bench: Bench) -> Row:
    """A read-only index folder and a changed seed file: the stale index is served, each answer with a notice."""
    row = Row("read-only index folder + seed change (unprivileged)")
    if skipped_without_privilege_drop(row):
        return row
    seeds, index = bench.workspace()
    before = active(index)
    append_paragraph(seeds)
    subprocess.run(["chmod", "-R", "a-w", str(index)], check=True)
    answers = bench.ask(seeds, index, row, unprivileged=True)
    subprocess.run(["chmod", "-R", "u+w", str(index)], check=True)
    noticed = answers and all(a.get("notice") for a in answers)
    row.outcomes["previous build served, with notice" if noticed and active(index) == before else "error"] += 1
    row.wrong += bench.wrong(answers, bench.reference)
    bench.next_build(seeds, index, row)
    return row


def changed_seeds_case(bench: Bench, name: str, change: Callable[[Path], None]) -> Row:
    """A careless edit of the seeds: the next ask rebuilds cleanly and answers as a clean build of them does."""
    row = Row(name)
    seeds, index = bench.workspace()
    before = active(index)
    change(seeds)
    answers = bench.ask(seeds, index, row)
    row.outcomes["clean rebuild" if answers and active(index) != before else "error"] += 1
    row.wrong += bench.wrong(answers, bench.expected(seeds))
    try:
        if any("\0" in p.text for p in load_index(index).passages):
            row.notes.append("NUL in passages")
    except IndexUnavailable as problem:
        row.notes.append(str(problem))
    bench.next_build(seeds, index, row)
    return row


def nul_bytes(seeds: Path) -> None:
    """NUL bytes after sentences and a run of them inside a paragraph, as a bad PDF extraction leaves."""
    path = seeds / CHANGED_SEED
    text = path.read_text(encoding="utf-8").replace("。", "。\0", 20)
    middle = len(text) // 2
    path.write_text(text[:middle] + "\0" * 64 + text[middle:], encoding="utf-8")


def hostile_questions(bench: Bench) -> Row:
    """Lone surrogates and emoji-only questions, by the command line and the API: a clear error or a decline."""
    row = Row("lone surrogate / emoji-only question")
    seeds, index = bench.workspace()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [PYTHON.encode(), b"-m", b"rag", b"ask", b"--seeds", bytes(seeds), b"--index", bytes(index)]
    lone = subprocess.run(args + [b"\xed\xa0\x80"], capture_output=True, cwd=PROJECT_ROOT, env=env, timeout=TIMEOUT_S)
    mixed = subprocess.run(args + [b"--json", bench.questions[0].encode() + b"\xed\xa0\x80\xff"], capture_output=True,
                           cwd=PROJECT_ROOT, env=env, timeout=TIMEOUT_S)
    row.tracebacks += tracebacks(*(o.decode("utf-8", "replace") for o in (lone.stdout, lone.stderr, mixed.stdout, mixed.stderr)))
    row.outcomes["clear error" if lone.returncode == 2 and len(lone.stderr.strip().splitlines()) == 1 else "error"] += 1
    if mixed.returncode != 0 or json.loads(mixed.stdout)["answer"] != bench.reference[0][0]:
        row.wrong += 1
    questions = ["\ud800", "\udcff\udcfe", "😀🎉👍", "🙂？", bench.questions[1] + "\ud800", "\u202e" + bench.questions[2]]
    answers = bench.ask(seeds, index, row, questions=questions)
    declined = [a.get("abstained") or "error" in a for a in answers[:4]]
    row.outcomes["clear error or declined"] += sum(declined)
    row.wrong += (4 - sum(declined)) + bench.wrong(answers[4:], bench.reference[1:3])
    row.notes.append("argv surrogate: exit 2, one line; surrogate + question: answered as without")
    return row


def killed_builds(bench: Bench) -> Row:
    """SIGKILL a build at random moments (half of them while it writes and switches): the index is never unusable."""
    row = Row(f"SIGKILL at random moments of a build ({KILL_RUNS} runs)")
    rng = random.Random(8)
    seeds, index = bench.workspace()
    append_paragraph(seeds)
    started = time.monotonic()
    run(build_cmd(seeds, index))
    whole = time.monotonic() - started  # how long the same build takes when nobody kills it
    for i in range(KILL_RUNS):
        seeds, index = bench.workspace()
        before = active(index)
        append_paragraph(seeds)
        proc = subprocess.Popen(build_cmd(seeds, index), cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        if i % 2 == 0:  # a random moment of the whole run
            deadline = time.monotonic() + rng.uniform(0, whole)
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(POLL_S)
        else:  # a random moment once the new build folder exists: while it is written and switched in
            while proc.poll() is None and not any(p.name.startswith(".build-") for p in index.iterdir()):
                time.sleep(POLL_S)
            time.sleep(rng.uniform(0, KILL_WRITE_WINDOW_S))
        finished = proc.poll() is not None
        if not finished:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        try:
            load_index(index)
            state = "finished before the kill" if finished else "killed after the switch" if active(index) != before else "killed, previous build served"
            row.outcomes[state] += 1
        except IndexUnavailable as problem:
            row.outcomes["index unusable"] += 1
            row.notes.append(str(problem))
        answers = bench.ask_here(seeds, index, row)  # a stale index is rebuilt first
        row.wrong += bench.wrong(answers, bench.expected(seeds))
        bench.next_build(seeds, index, row)
    row.notes.append(f"an unkilled build takes {whole:.1f} s")
    return row


def control(bench: Bench) -> Row:
    """No fault: a fresh process answers as the good index does (checks the comparison itself)."""
    row = Row("no fault (control)")
    seeds, index = bench.workspace()
    before = active(index)
    answers = bench.ask(seeds, index, row)
    row.outcomes["previous build served" if answers and active(index) == before else "error"] += 1
    row.wrong += bench.wrong(answers, bench.reference)
    bench.next_build(seeds, index, row)
    return row


def main(argv: list[str]) -> int:
    """Run every case (or those whose names contain one of the arguments) and print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__.splitlines()[0])
    parser.add_argument("--all-seeds", action="store_true", help="all five seed files (default: two, see SEED_SUBSET)")
    parser.add_argument("only", nargs="*", help="run only the cases whose names contain one of these")
    args = parser.parse_args(argv)
    only = args.only
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rag-faults-") as tmp:
        bench = Bench(Path(tmp), None if args.all_seeds else SEED_SUBSET)
        cases: dict[str, Callable[[], Row]] = {
            "control": lambda: control(bench),
            "concurrent builds": lambda: concurrent_builds(bench),
            "stale ask": lambda: build_and_ask_on_stale(bench),
            **{n: (lambda n=n, d=d: damage_case(bench, n, d)) for n, d in DAMAGES.items()},
            "chmod 000": lambda: unreadable_seed(bench),
            "read-only": lambda: read_only_index(bench),
            "emptied seed": lambda: changed_seeds_case(bench, "emptied seed file", lambda s: (s / CHANGED_SEED).write_bytes(b"")),
            "NUL bytes": lambda: changed_seeds_case(bench, "NUL bytes in a document", nul_bytes),
            "questions": lambda: hostile_questions(bench),
            "SIGKILL": lambda: killed_builds(bench),
        }
        rows = []
        for name, case in cases.items():
            if only and not any(o.lower() in name.lower() for o in only):
                continue
            try:
                row = case()
            except Exception as error:  # noqa: BLE001 - the harness itself failed: shown as a row, the run goes on
                row = Row(name, Counter({"harness error": 1}), tracebacks=1, notes=[f"{type(error).__name__}: {error}"])
            print(f"[{time.monotonic() - started:5.0f} s] | " + " | ".join(row.cells()) + " |", file=sys.stderr, flush=True)
            rows.append(row)
        files = len(list(bench.seeds.iterdir()))
        subprocess.run(["chmod", "-R", "u+rwX", tmp], check=False)
    print(f"{files} seed files, {len(bench.questions)} reference questions; {time.monotonic() - started:.0f} s\n")
    print("| case | outcome | wrong answers | tracebacks | leftovers after next build | notes |\n|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")
    bad = sum(r.wrong + r.tracebacks + r.leftovers for r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
