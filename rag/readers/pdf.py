"""PDF files: the text layer of each page (or OCR of a scanned page), without running headers, footers and page numbers.

Scanned pages are read only where the optional OCR package is installed (`pip install rapidocr-onnxruntime==1.4.4`:
PP-OCRv4 Chinese models inside the wheel, Apache-2.0; about 100 MB with OpenCV, so not in the default install).
"""
from __future__ import annotations

import importlib.util
import logging
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np
from pypdf import PdfReader

from rag.document import Block, Document, UnreadableDocument, split_authors

log = logging.getLogger(__name__)
OCR_MODULE = "rapidocr_onnxruntime"

EDGE_LINES = 3  # running headers and footers are among the first and last lines of a page
# A line at a page's edge that recurs on this share of the pages (digits aside) is a running header or footer.
REPEATED_SHARE = 0.5
PAGE_NUMBER = re.compile(
    r"^[\s\-–—·•|]*(?:第\s*)?\d{1,4}(?:\s*页)?(?:\s*(?:/|of|共)\s*\d{1,4}\s*页?)?[\s\-–—·•|]*$"
    r"|^(?:page|p\.)\s*\d{1,4}(?:\s*of\s*\d{1,4})?$",
    re.IGNORECASE,
)
DIGITS = re.compile(r"\d+")
SPACES = re.compile(r"\s+")
# Metadata titles that name the producing program or file rather than the document.
JUNK_TITLE = re.compile(r"^(?:untitled|无标题|microsoft (?:word|powerpoint) - .*)$|\.(?:docx?|pdf|wps|txt)$", re.IGNORECASE)


def read(path: Path) -> Document:
    """Each page's lines (numbered from 1), with the running headers and footers dropped."""
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # damaged files are reported once, by the corpus
    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableDocument("encrypted")
        pages = [(page.extract_text() or "").splitlines() or _ocr(page, path, number) for number, page in enumerate(reader.pages, 1)]
        info = reader.metadata or {}
        title, author = str(info.get("/Title") or "").strip(), str(info.get("/Author") or "")
    except (UnreadableDocument, OSError):
        raise
    except Exception as error:  # a parser over untrusted bytes may fail in any way; the file is what is wrong
        raise UnreadableDocument("damaged", kind="PDF", detail=f"{type(error).__name__}: {error}") from error
    pages = _without_running_lines(pages)
    blocks = tuple(Block(line, page=number) for number, lines in enumerate(pages, start=1) for line in lines)
    return Document(blocks, "" if JUNK_TITLE.search(title) else title, split_authors(author))


def ocr_available() -> bool:
    """Whether the optional OCR package is installed."""
    return importlib.util.find_spec(OCR_MODULE) is not None


@lru_cache(maxsize=1)
def _ocr_engine():
    return importlib.import_module(OCR_MODULE).RapidOCR()


def _ocr(page, path: Path, number: int) -> list[str]:
    """The text lines OCR reads from a page's images, top to bottom; [] (with a warning) where OCR is not installed."""
    images = list(page.images)
    if not images:
        return []
    if not ocr_available():
        log.warning("%s, page %d: a scanned page, skipped; to read it install OCR (pip install %s==1.4.4) and rebuild",
                    path.name, number, OCR_MODULE.replace("_", "-"))
        return []
    lines = []
    for image in images:
        found, _ = _ocr_engine()(np.array(image.image.convert("RGB")))
        lines += [text for _, text, _ in sorted(found or [], key=lambda item: (item[0][0][1], item[0][0][0]))]
    return lines


def _key(line: str) -> str:
    return DIGITS.sub("#", SPACES.sub("", line))


def _without_running_lines(pages: list[list[str]]) -> list[list[str]]:
    """Drop page numbers, and lines that recur at the top or bottom of many pages, from each page's edges."""
    edge_keys = Counter(
        key for lines in pages for key in {_key(line) for line in lines[:EDGE_LINES] + lines[-EDGE_LINES:]} if key
    )
    least = max(2, round(REPEATED_SHARE * len(pages)))
    running = {key for key, count in edge_keys.items() if count >= least}

    def is_running(line: str) -> bool:
        return not line.strip() or _key(line) in running or bool(PAGE_NUMBER.match(line.strip()))

    kept = []
    for lines in pages:
        start, end = 0, len(lines)
        while start < end and start < EDGE_LINES and is_running(lines[start]):
            start += 1
        while end > start and len(lines) - end < EDGE_LINES and is_running(lines[end - 1]):
            end -= 1
        kept.append(lines[start:end])
    return kept
