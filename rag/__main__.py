"""Command line: `python -m rag ask "问题" [--top-k N] [--json]`."""
from __future__ import annotations

import argparse
import json
import sys

from rag.answer import NOT_FOUND, Answer, page_label
from rag.build import add_settings_arguments, settings_from
from rag.index import IndexUnavailable
from rag.model import ModelError
from rag.pipeline import Pipeline


def format_answer(answer: Answer) -> str:
    """A plain-text rendering: the answer, the cited articles, the supporting passages."""
    lines = [NOT_FOUND if answer.abstained else answer.answer, ""]
    if answer.citations:
        lines.append("Sources:")
        lines += [f"  - {c.title} — {'、'.join(c.authors) or 'unknown author'} ({_where(c.source, c.pages)})" for c in answer.citations]
        lines.append("")
    lines.append("Possibly related passages:" if answer.abstained else "Supporting passages:")
    for i, p in enumerate(answer.passages, 1):
        lines.append(f"  [{i}] {p.article.title} ({_where(p.article.source, p.pages)}) score {p.score:.3f}")
        lines.append(f"      {p.text}")
    lines.append(f"\n({answer.timings_ms['total']:.0f} ms)")
    return "\n".join(lines)


def _where(source: str, pages: tuple[int, ...]) -> str:
    return ", ".join(part for part in (source, page_label(pages)) if part)


def main(argv: list[str] | None = None) -> int:
    """Run the `ask` command."""
    parser = argparse.ArgumentParser(prog="python -m rag", description="Ask the policy articles a question.")
    commands = parser.add_subparsers(dest="command", required=True)
    ask = commands.add_parser("ask", help="answer a question with quoted, cited sentences")
    ask.add_argument("question")
    ask.add_argument("--top-k", type=int, default=None, help="number of supporting passages (default 5)")
    ask.add_argument("--json", action="store_true", help="print the answer record as JSON")
    add_settings_arguments(ask)
    args = parser.parse_args(argv)
    try:
        answer = Pipeline(settings_from(args)).ask(args.question, top_k=args.top_k)
    except (ValueError, TypeError) as e:  # the question itself
        print(f"rag: {e}", file=sys.stderr)
        return 2
    except (ModelError, IndexUnavailable, OSError) as e:  # the model, index or seeds
        print(f"rag: {e}", file=sys.stderr)
        return 1
    print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2) if args.json else format_answer(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
