"""Passage records on disk: one JSON line per passage and memory-mapped row offsets, read by row on demand.

A national library holds about a million passages and five million sentences: as Python objects they would take
gigabytes and seconds to load, so they stay on disk and `Passages`, `Sentences` and `PassageSentences` read a row when
it is asked for. The articles (a few per file) stay in memory.
"""
from __future__ import annotations

import json
import mmap
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from rag.corpus import Article, Passage

ARTICLES = "articles.json"
PASSAGES = "passages.jsonl"
PASSAGE_OFFSETS = "passage_offsets.npy"  # byte offset of each passage's line, then the file's size
SENTENCE_STARTS = "sentence_starts.npy"  # row of each passage's first sentence, then the number of sentences
# Passages kept parsed, the first parsed dropped first: a question reads each of its top passages three times or more
# (features, quotes, citations; 17 reads of 20 µs a question on the seed dev set), and popular ones recur.
PARSED_PASSAGES = 1024

T = TypeVar("T")


@dataclass(frozen=True)
class Sentence:
    """One sentence of a passage, the unit an answer quotes."""

    text: str
    passage: int  # row of its passage in Index.passages


class Rows(Sequence[T]):
    """A read-only sequence whose items are read by row: subclasses give `__len__` and `row`."""

    def row(self, row: int) -> T:
        """The item at a row in range(len(self))."""
        raise NotImplementedError

    def __getitem__(self, key):
        rows = range(len(self))[key]  # negative rows, slices and IndexError as for a tuple
        return [self.row(r) for r in rows] if isinstance(key, slice) else self.row(rows)


@dataclass(frozen=True, eq=False)
class Passages(Rows[Passage]):
    """The passages of a build, each parsed from its JSON line when it is read."""

    lines: mmap.mmap
    offsets: np.ndarray
    parsed: OrderedDict[int, Passage] = field(default_factory=OrderedDict, repr=False)  # the last PARSED_PASSAGES parsed

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, row: int) -> Passage:
        """The passage at a row."""
        passage = self.parsed.get(row)
        if passage is None:
            p = json.loads(self.lines[int(self.offsets[row]) : int(self.offsets[row + 1])])
            passage = self.parsed[row] = Passage(**{**p, "sentences": tuple(p["sentences"]), "pages": tuple(p["pages"])})
            if len(self.parsed) > PARSED_PASSAGES:
                self.parsed.popitem(last=False)  # one C call: safe beside other threads' reads
        return passage


@dataclass(frozen=True, eq=False)
class Sentences(Rows[Sentence]):
    """Every sentence of every passage, in passage order, read through its passage."""

    passages: Passages
    starts: np.ndarray

    def __len__(self) -> int:
        return int(self.starts[-1])

    def row(self, row: int) -> Sentence:
        """The sentence at a row, with the row of its passage."""
        passage = int(self.passage_of(np.array([row]))[0])
        return Sentence(self.passages[passage].sentences[row - int(self.starts[passage])], passage)

    def passage_of(self, rows: np.ndarray) -> np.ndarray:
        """The passage row of each sentence row, without reading any text."""
        return np.searchsorted(self.starts, rows, side="right") - 1


@dataclass(frozen=True, eq=False)
class PassageSentences(Rows[range]):
    """The rows in `Sentences` of each passage's sentences."""

    starts: np.ndarray

    def __len__(self) -> int:
        return len(self.starts) - 1

    def row(self, row: int) -> range:
        """The sentence rows of the passage at a row."""
        return range(int(self.starts[row]), int(self.starts[row + 1]))


def write_records(build: Path, articles: Sequence[Article], passages: Sequence[Passage]) -> None:
    """Write the articles, the passages as JSON lines, their offsets and each passage's first sentence row."""
    (build / ARTICLES).write_text(json.dumps([asdict(a) for a in articles], ensure_ascii=False), encoding="utf-8")
    offsets, starts = [0], [0]
    with (build / PASSAGES).open("wb") as f:
        for p in passages:
            offsets.append(offsets[-1] + f.write(json.dumps(asdict(p), ensure_ascii=False).encode() + b"\n"))
            starts.append(starts[-1] + len(p.sentences))
    np.save(build / PASSAGE_OFFSETS, np.array(offsets, dtype=np.int64))
    np.save(build / SENTENCE_STARTS, np.array(starts, dtype=np.int64))


def read_articles(build: Path) -> dict[str, Article]:
    """The articles of a build by id."""
    records = json.loads((build / ARTICLES).read_text(encoding="utf-8"))
    return {a["id"]: Article(**{**a, "authors": tuple(a["authors"])}) for a in records}


def open_records(build: Path) -> tuple[Passages, Sentences, PassageSentences]:
    """The passages and sentences of a build, memory-mapped; ValueError if the offsets do not fit the files."""
    # Plain views of the maps: each np.memmap index costs a few µs of Python, and a question reads about a hundred.
    offsets = np.asarray(np.load(build / PASSAGE_OFFSETS, mmap_mode="r"))
    starts = np.asarray(np.load(build / SENTENCE_STARTS, mmap_mode="r"))
    with (build / PASSAGES).open("rb") as f:
        lines = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    if offsets.ndim != 1 or offsets.shape != starts.shape or offsets[0] != 0 or offsets[-1] != len(lines) or starts[0] != 0:
        raise ValueError("passage offsets do not match the passages")
    passages = Passages(lines, offsets)
    return passages, Sentences(passages, starts), PassageSentences(starts)
