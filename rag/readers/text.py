"""Plain text and Markdown files: decoded from UTF-8, UTF-16, GB18030/GBK or a detected encoding."""
from __future__ import annotations

import unicodedata
from pathlib import Path

import charset_normalizer

from rag.document import Block, Document

UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
CHINESE_FALLBACK_ENCODING = "gb18030"  # superset of GBK and GB2312
# A decoding is rejected when more than this share of its characters are control,
# private-use or replacement characters (what wrong guesses and random bytes produce).
MAX_JUNK_CHAR_SHARE = 0.01


def read_text(path: Path) -> str:
    """Decode a seed file: UTF-8 (with or without BOM), else GB18030/GBK, else a detected encoding."""
    data = Path(path).read_bytes()
    if data.startswith(UTF8_BOM):
        return data[len(UTF8_BOM):].decode("utf-8")
    if data.startswith(UTF16_BOMS):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as utf8_error:
        first_error = utf8_error
    for text in (_try_decode(data, CHINESE_FALLBACK_ENCODING), _detected_decode(data)):
        if text is not None and _looks_like_text(text):
            return text
    raise UnicodeDecodeError(
        "utf-8", data, first_error.start, first_error.end,
        f"{Path(path).name}: not UTF-8, GB18030/GBK or another detectable text encoding",
    )


def _try_decode(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        return None


def _detected_decode(data: bytes) -> str | None:
    best = charset_normalizer.from_bytes(data).best()
    return None if best is None else str(best)


def _looks_like_text(text: str) -> bool:
    junk = sum(
        1 for ch in text
        if ch == "\ufffd" or (unicodedata.category(ch) in ("Cc", "Co") and ch not in "\t\n\r\f")
    )
    return junk <= MAX_JUNK_CHAR_SHARE * max(len(text), 1)


def read(path: Path) -> Document:
    """A text file's lines (Markdown headings are recognised later, by the corpus)."""
    return Document(tuple(Block(line) for line in read_text(path).splitlines()))
