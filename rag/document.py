"""What a format reader gives the corpus (a document's lines with their page and structure, its metadata), and what readers share."""
from __future__ import annotations

import re
from dataclasses import dataclass

from rag.messages import Problem

AUTHOR_SEPARATORS = re.compile(r"\s*[;；,，、/]\s*|\s{2,}")


@dataclass(frozen=True)
class Block:
    """One line of a document's text, as extracted."""

    text: str
    page: int = 0  # 1-based page it is printed on; 0 for formats without pages
    heading: bool = False  # the document's own structure marks it as a title or heading


@dataclass(frozen=True)
class Document:
    """A file's text and the metadata its format records (used where the text itself names none)."""

    blocks: tuple[Block, ...]
    title: str = ""
    authors: tuple[str, ...] = ()
    published: str = ""


class UnreadableDocument(Problem):
    """A file that cannot be read as a document: its code says why (encrypted, damaged, empty, no_text, scanned)."""


def table_rows(rows: list[list[str]]) -> list[str]:
    """A table as one text line per body row, each cell after its column's heading: "任务：加装电梯，牵头单位：市住建局。"."""
    rows = [[" ".join(cell.split()) for cell in row] for row in rows if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        return ["，".join(cell for cell in row if cell) + "。" for row in rows]
    header, body = rows[0], rows[1:]
    return [
        "，".join(f"{name}：{cell}" if name and name != cell else cell for name, cell in zip(header, row) if cell) + "。"
        for row in body
    ]


def split_authors(text: str) -> tuple[str, ...]:
    """Author names from a metadata field ("王晓明; 李静", "王晓明，李静")."""
    return tuple(name for name in AUTHOR_SEPARATORS.split(text or "") if name)
