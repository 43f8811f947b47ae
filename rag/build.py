"""The offline rebuild command: `python -m rag.build [--seeds DIR] [--index DIR] [--model NAME_OR_PATH] [--backend B] [--store S]`."""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

from rag.config import BACKENDS, READER_MODES, Settings
from rag.pipeline import Pipeline


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """The --seeds/--index/--model/--backend/--store/--reader options shared by every command (defaults: RAG_* variables, then config)."""
    parser.add_argument("--seeds", help="folder of documents: .txt .md .pdf .docx .html (env RAG_SEEDS; default seeds/)")
    parser.add_argument("--index", help="index folder (env RAG_INDEX; default index/)")
    parser.add_argument("--model", help="sentence-transformers model name or path (env RAG_MODEL)")
    parser.add_argument("--backend", choices=BACKENDS, help="how the model runs (env RAG_BACKEND; see README)")
    parser.add_argument("--store", help="faiss (default), a Milvus URI http://host:19530, or a milvus-lite file *.db (env RAG_STORE)")
    parser.add_argument("--reader", choices=READER_MODES, help="fast, or cross: the cross-encoder's second stage (env RAG_READER; see README)")


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by the command-line options given."""
    settings = Settings.from_env(seeds=args.seeds, index=args.index, model=args.model, backend=args.backend, store=args.store)
    return replace(settings, reader=replace(settings.reader, mode=args.reader)) if args.reader else settings


def main(argv: list[str] | None = None) -> int:
    """Build the index and print a summary; exit status 1 with a one-line reason on failure."""
    parser = argparse.ArgumentParser(prog="python -m rag.build", description=__doc__)
    add_settings_arguments(parser)
    args = parser.parse_args(argv)
    settings = settings_from(args)
    if not os.environ.get("RAG_TORCH_THREADS"):  # an offline build has the cores to itself; serving uses fewer
        settings = replace(settings, torch_threads=0)
    try:
        report = Pipeline(settings).build(progress=True)
    except KeyboardInterrupt:
        print("rag.build: interrupted; the previous index is unchanged.", file=sys.stderr)
        return 130
    except Exception as e:  # the command's contract is one clear line, not a traceback
        print(f"rag.build: failed: {e}", file=sys.stderr)
        return 1
    skipped = f", skipped {len(report.skipped)} unreadable ({', '.join(report.skipped)})" if report.skipped else ""
    print(
        f"Indexed {report.files} files{skipped}: {report.articles} articles, {report.passages} passages, "
        f"{report.sentences} sentences in {report.seconds:.1f} s "
        f"({report.embedded} texts embedded, {report.reused} reused from the previous build) → {report.path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
