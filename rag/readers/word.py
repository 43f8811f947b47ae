"""Word (.docx) files: paragraphs in order, heading styles marked, tables as text rows, core properties as metadata."""
from __future__ import annotations

import zipfile
from pathlib import Path

import docx
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table

from rag.document import Block, Document, UnreadableDocument, split_authors, table_rows

HEADING_STYLES = ("title", "subtitle", "heading", "标题", "副标题")


def read(path: Path) -> Document:
    """The body's paragraphs and tables in document order; Title/Heading styles mark headings."""
    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as error:
        raise UnreadableDocument("damaged", kind="Word .docx", detail=type(error).__name__) from error
    blocks: list[Block] = []
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            rows = [[cell.text for cell in row.cells] for row in item.rows]
            blocks.extend(Block(row) for row in table_rows(rows))
        elif item.text.strip():
            style = (item.style.name if item.style is not None else "").lower()
            blocks.append(Block(item.text, heading=style.startswith(HEADING_STYLES)))
    properties = document.core_properties
    return Document(tuple(blocks), (properties.title or "").strip(), split_authors(properties.author or ""))
