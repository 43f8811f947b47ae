"""The seed dev set (tests/data/dev_questions.jsonl) through ask(): answer accuracy by kind and both abstention errors.

Run by hand: `python -m benchmarks.seed_dev`; tests/test_answer.py asserts these figures with a margin.
"""
from __future__ import annotations

import json
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rag.answer import Answer
from rag.config import PROJECT_ROOT
from rag.pipeline import Pipeline

DEV_SET = PROJECT_ROOT / "tests" / "data" / "dev_questions.jsonl"
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class DevQuestion:
    id: str
    question: str
    kind: str  # paraphrase | keyword | english | unanswerable
    evidence: tuple[str, ...]  # whitespace-free spans; a correct answer contains one
    source: str


def load_dev_set(path: Path = DEV_SET) -> list[DevQuestion]:
    """The dev questions, one JSON object a line."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [DevQuestion(r["id"], r["question"], r["kind"], tuple(r["evidence"]), r["source"]) for r in rows]


def is_correct(q: DevQuestion, answer: Answer) -> bool:
    """Unanswerable: the reader abstained. Answerable: it answered and a quoted sentence holds an evidence span."""
    if not q.evidence:
        return answer.abstained
    quoted = _SPACE.sub("", answer.answer)
    return not answer.abstained and any(span in quoted for span in q.evidence)


def evaluate(pipeline: Pipeline, questions: list[DevQuestion]) -> dict[str, float]:
    """Accuracy by kind, overall answer accuracy, and the two abstention error rates."""
    right, total, false_abstain, false_answer = Counter(), Counter(), 0, 0
    for q in questions:
        answer = pipeline.ask(q.question)
        total[q.kind] += 1
        right[q.kind] += is_correct(q, answer)
        false_abstain += bool(q.evidence) and answer.abstained
        false_answer += not q.evidence and not answer.abstained
    answerable = sum(n for kind, n in total.items() if kind != "unanswerable")
    return {
        **{f"accuracy {kind}": right[kind] / total[kind] for kind in sorted(total)},
        "accuracy answerable": sum(n for k, n in right.items() if k != "unanswerable") / answerable,
        "false abstention rate": false_abstain / answerable,
        "false answer rate": false_answer / max(1, total["unanswerable"]),
    }


def main() -> int:
    """Run the dev set through the default pipeline and print the table."""
    questions = load_dev_set()
    results = evaluate(Pipeline(), questions)
    print(f"seed dev set: {len(questions)} questions")
    print("| measure | value |\n|---|---|")
    for name, value in results.items():
        print(f"| {name} | {value:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
