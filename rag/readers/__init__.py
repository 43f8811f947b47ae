"""One small reader per file format, each turning a file into a Document for the one corpus pipeline."""
from __future__ import annotations

import importlib
from pathlib import Path

from rag.document import Document, UnreadableDocument

# Suffix → the module whose read(path) reads it (imported on first use: a build of text files never loads pypdf).
READERS = {
    ".txt": "rag.readers.text",
    ".md": "rag.readers.text",
    ".pdf": "rag.readers.pdf",
    ".docx": "rag.readers.word",
    ".html": "rag.readers.web",
    ".htm": "rag.readers.web",
}
SUFFIXES = tuple(READERS)


def is_document(path: Path) -> bool:
    """Is this a file the corpus reads (by its suffix)?"""
    return path.suffix.lower() in READERS and path.is_file()


def read_document(path: Path) -> Document:
    """Read any supported file; raises UnreadableDocument, UnicodeDecodeError or OSError for a file it cannot read."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise UnreadableDocument("empty")
    return importlib.import_module(READERS[path.suffix.lower()]).read(path)
