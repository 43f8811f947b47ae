"""A seed question set through ask(): answer accuracy by kind and both abstention errors.

Run by hand: `python -m benchmarks.seed_dev` for the dev set (tests/data/dev_questions.jsonl; tests/test_answer.py
asserts its figures with a margin), `python -m benchmarks.seed_dev test` for the independent test set
(benchmarks/data/seed_test_questions.jsonl: written from the seed files alone, by someone who saw neither the code nor
the other question sets; measured with, never fitted or tuned on), and `python -m benchmarks.seed_dev validation` for
the set to decide changes on (benchmarks/data/seed_validation_questions.jsonl: written over the seed files without
seeing the dev or test set, then kept only where a question shares no evidence sentence with them and resembles none
of them; never fitted on, so that a change can be chosen on it and then measured once on the dev and test sets), and
`python -m benchmarks.seed_dev hard` for paraphrases written to share almost no words with their evidence
(benchmarks/data/seed_hard_paraphrases.jsonl: median 4% of a question's bigrams in its evidence sentence; apart from
every other set's evidence sentences; never fitted on; a stress test of retrieval and sentence choice), and
`python -m benchmarks.seed_dev english` for English questions (benchmarks/data/seed_english_questions.jsonl: 47
answerable, 20 near-topic unanswerable, apart from every other set's evidence sentences; never fitted on: written as
fitting questions, a refit on them measured no better, so they decide English changes instead).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from rag.answer import Answer
from rag.config import PROJECT_ROOT
from rag.pipeline import Pipeline

DEV_SET = PROJECT_ROOT / "tests" / "data" / "dev_questions.jsonl"
SETS = {"dev": DEV_SET, "test": PROJECT_ROOT / "benchmarks" / "data" / "seed_test_questions.jsonl",
        "validation": PROJECT_ROOT / "benchmarks" / "data" / "seed_validation_questions.jsonl",
        "hard": PROJECT_ROOT / "benchmarks" / "data" / "seed_hard_paraphrases.jsonl",
        "english": PROJECT_ROOT / "benchmarks" / "data" / "seed_english_questions.jsonl"}
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class DevQuestion:
    id: str
    question: str
    kind: str  # paraphrase | keyword | english | unanswerable
    evidence: tuple[str, ...]  # whitespace-free spans; a correct answer contains one
    source: str
    near_topic: bool  # an unanswerable question near the articles' topics (asks what they do not give)


def load_dev_set(path: Path = DEV_SET) -> list[DevQuestion]:
    """The dev questions, one JSON object a line."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [DevQuestion(r["id"], r["question"], r["kind"], tuple(r["evidence"]), r["source"], bool(r.get("near_topic"))) for r in rows]


def is_correct(q: DevQuestion, answer: Answer) -> bool:
    """Unanswerable: the reader declined. Answerable: it answered and a quoted sentence holds an evidence span."""
    if not q.evidence:
        return answer.abstained
    quoted = _SPACE.sub("", answer.answer)
    return not answer.abstained and any(span in quoted for span in q.evidence)


def evaluate(pipeline: Pipeline, questions: list[DevQuestion]) -> dict[str, tuple[float, int]]:
    """(rate, number of questions) of: accuracy by kind and overall, (near-topic) unanswerables declined, false declines."""
    right, total = Counter(), Counter()
    for q in questions:
        answer = pipeline.ask(q.question)
        correct = is_correct(q, answer)
        kinds = [q.kind, "answerable"] if q.evidence else [q.kind] + (["near-topic unanswerable"] if q.near_topic else [])
        for kind in kinds:
            total[kind] += 1
            right[kind] += correct
        if q.evidence:
            total["false decline"] += 1
            right["false decline"] += answer.abstained
    order = ("keyword", "paraphrase", "english", "answerable", "unanswerable", "near-topic unanswerable", "false decline")
    names = {"unanswerable": "unanswerables declined", "near-topic unanswerable": "near-topic unanswerables declined",
             "false decline": "answerables wrongly declined"}
    return {names.get(k, "accuracy " + k): (right[k] / total[k], total[k]) for k in order if total[k]}


def sentence_accuracy(pipeline: Pipeline, questions: list[DevQuestion]) -> float:
    """How often the quote holds the evidence of an answerable question when the reader never declines: its sentence
    choice, apart from its decision."""
    settings = pipeline.settings
    never = Pipeline(replace(settings, reader=replace(settings.reader, decline_below=0.0)), model=pipeline.model)
    answerable = [q for q in questions if q.evidence]
    return sum(is_correct(q, never.ask(q.question)) for q in answerable) / len(answerable)


def main() -> int:
    """Run a seed question set through the default pipeline and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("set", nargs="?", choices=sorted(SETS), default="dev")
    name = parser.parse_args().set
    questions = load_dev_set(SETS[name])
    pipeline = Pipeline()
    results = evaluate(pipeline, questions)
    print(f"seed {name} set: {len(questions)} questions")
    print("| measure | value |\n|---|---|")
    for name, (value, n) in results.items():
        print(f"| {name} ({n}) | {value:.3f} |")
    answerable = sum(bool(q.evidence) for q in questions)
    print(f"| evidence quoted when never declining ({answerable}) | {sentence_accuracy(pipeline, questions):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
