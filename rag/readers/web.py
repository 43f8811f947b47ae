"""Saved web pages (.html/.htm): the article text without navigation, toolbars, share bars, footers or scripts."""
from __future__ import annotations

import re
from pathlib import Path

import lxml.html
import trafilatura

from rag.document import Block, Document, UnreadableDocument, split_authors, table_rows

# 发布日期 / 信息来源 lines, which content extraction treats as page furniture but citations need.
META_LINE = re.compile(r"(?:发布日期|发布时间|信息来源|来源)\s*[:：]")
META_LINE_MAX_CHARS = 160
TABLE_ROW = re.compile(r"^\|(.*)\|$")


def read(path: Path) -> Document:
    """The page's main text (trafilatura), its title as a heading, its publication line, tables as text rows."""
    data = Path(path).read_bytes()
    result = trafilatura.bare_extraction(data, include_tables=True, include_comments=False, with_metadata=True)
    if result is None or not (result.text or "").strip():
        raise UnreadableDocument("no_text")
    blocks = [Block(result.title, heading=True)] if result.title else []
    blocks += [Block(line) for line in _publication_lines(data)]
    blocks += _text_blocks(result.text)
    return Document(tuple(blocks), result.title or "", split_authors(result.author or ""), result.date or "")


def _publication_lines(data: bytes) -> list[str]:
    """The page's first short line naming its publication date or source."""
    try:
        text = lxml.html.document_fromstring(data).text_content()
    except (ValueError, lxml.etree.ParserError):
        return []
    lines = (" ".join(line.split()) for line in text.splitlines())
    return next(([line] for line in lines if META_LINE.search(line) and len(line) <= META_LINE_MAX_CHARS), [])


def _text_blocks(text: str) -> list[Block]:
    """Lines of the extracted text; runs of "| a | b |" rows become text rows."""
    blocks: list[Block] = []
    table: list[list[str]] = []
    for line in text.splitlines() + [""]:
        if match := TABLE_ROW.match(line.strip()):
            table.append([cell.strip() for cell in match.group(1).split("|")])
            continue
        if table:
            blocks.extend(Block(row) for row in table_rows(table))
            table = []
        blocks.append(Block(line))
    return blocks
