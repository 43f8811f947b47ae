"""Index build benchmark: extraction per format, cold build, throughput against the raw encode, incremental rebuilds, memory.

Run by hand: `python -m benchmarks.build`; works on copies of seeds/ in a temporary folder, prints a table.
"""
from __future__ import annotations

import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.cmrc import print_table
from rag.config import PROJECT_ROOT, Settings
from rag.corpus import load_corpus, parse_file
from rag.index import passage_text_for_embedding
from rag.model import encode_passages, load_model
from rag.pipeline import Pipeline
from rag.readers.pdf import ocr_available

CHANGED_FILE = "003_4fcd156b4d347718.txt"
DOCUMENTS = PROJECT_ROOT / "tests" / "fixtures" / "documents"
FORMAT_SAMPLES = ("two_column.pdf", "notice.docx", "gov_page.html")
EXTRACTION_REPEATS = 5


def timed(fn) -> tuple[float, object]:
    """Seconds a call takes, and its result."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def extraction_rows(seeds: Path) -> list[tuple[str, str, str]]:
    """Seconds per file to read and split one file of each format (the mean of a few warm runs), with pages/s for PDF."""
    scanned = ["scanned.pdf"] if ocr_available() else []  # OCR is optional
    samples = [sorted(seeds.glob("*.txt"))[0]] + [DOCUMENTS / name for name in (*FORMAT_SAMPLES, *scanned)]
    rows = []
    for path in samples:
        parse_file(path)  # warm-up: imports, jieba's dictionary, the OCR models
        seconds, (_, passages) = timed(lambda: [parse_file(path) for _ in range(EXTRACTION_REPEATS)][-1])
        per_file = seconds / EXTRACTION_REPEATS
        pages = max((page for p in passages for page in p.pages), default=0)
        rate = f"{pages / per_file:.1f} pages/s" if pages else f"{1 / per_file:.1f} files/s"
        chars = sum(len(p.text) for p in passages)
        rows.append((f"extract {path.suffix} ({path.name})", f"{per_file * 1000:.0f} ms/file", f"{rate}, {chars / per_file / 1000:.0f}k chars/s"))
    return rows


def main() -> int:
    """Measure and print the table."""
    settings = Settings.from_env()
    load_seconds, model = timed(lambda: load_model(settings.model, settings.backend))
    with tempfile.TemporaryDirectory() as tmp:
        seeds = Path(tmp) / "seeds"
        shutil.copytree(settings.seeds, seeds)
        pipeline = Pipeline(Settings(seeds=seeds, index=Path(tmp) / "index", model=settings.model), model=model)
        cold_seconds, cold = timed(lambda: pipeline.build(progress=False))
        same_seconds, same = timed(lambda: pipeline.build(progress=False))
        changed = seeds / CHANGED_FILE
        changed.write_text(changed.read_text(encoding="utf-8").replace("数字经济", "数码经济", 3), encoding="utf-8")
        one_seconds, one = timed(lambda: pipeline.build(progress=False))

    corpus = load_corpus(settings.seeds, settings.max_passage_chars)
    articles = {a.id: a for a in corpus.articles}
    texts = [passage_text_for_embedding(p, articles[p.article_id]) for p in corpus.passages]
    texts += [s for p in corpus.passages for s in p.sentences]
    raw_seconds, _ = timed(lambda: encode_passages(model, texts, batch_size=settings.batch_size))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    rows = extraction_rows(settings.seeds) + [
        ("model load", f"{load_seconds:.1f} s", ""),
        ("cold build", f"{cold_seconds:.1f} s", f"{cold.passages} passages + {cold.sentences} sentences embedded"),
        ("build throughput", f"{cold.passages / cold_seconds:.1f} passages/s", f"{(cold.passages + cold.sentences) / cold_seconds:.1f} texts/s"),
        ("raw encode of the same texts", f"{raw_seconds:.1f} s", f"{len(texts) / raw_seconds:.1f} texts/s"),
        ("overhead ratio (build / raw encode)", f"{cold_seconds / raw_seconds:.2f}", ""),
        ("rebuild, nothing changed", f"{same_seconds:.1f} s", f"{same.embedded} embedded, {same.reused} reused"),
        ("rebuild, one file changed", f"{one_seconds:.1f} s", f"{one.embedded} embedded, {one.reused} reused"),
        ("peak memory (RSS)", f"{peak_mib:.0f} MiB", ""),
    ]
    print_table([dict(zip(("measure", "value", "detail"), row)) for row in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
