"""The knowledge base's files: add an uploaded document to the seed folder (checked first) or remove one."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import unicodedata
from pathlib import Path

from rag.corpus import parse_file
from rag.document import UnreadableDocument
from rag.messages import Problem
from rag.readers import SUFFIXES, is_document

# Characters no file name keeps: path separators, Windows-reserved ones, and anything invisible.
UNSAFE_CHARS = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]')
MAX_NAME_CHARS = 120
STAGING_PREFIX = ".upload-"  # a hidden folder inside the seed folder: same file system, so the final move is atomic


def document_name(name: str) -> str:
    """A safe file name for an upload: its last path part, unsafe characters replaced, a supported suffix; else Problem."""
    base = unicodedata.normalize("NFC", re.split(r"[\\/]", str(name))[-1])
    base = UNSAFE_CHARS.sub("_", "".join(c for c in base if unicodedata.category(c) not in ("Cc", "Cf"))).strip(" .")
    stem, suffix = os.path.splitext(base)
    if suffix.lower() not in SUFFIXES:
        raise Problem("unsupported_type", name=name, suffixes=" ".join(SUFFIXES))
    if not stem.strip(" ._"):
        raise Problem("unusable_name", name=name)
    return stem[: MAX_NAME_CHARS - len(suffix)] + suffix.lower()


def add_document(seeds: Path, upload: Path, name: str, max_bytes: int) -> str:
    """Check an uploaded file (type, size, readable with some text) and move it into the seed folder; returns its name.

    Raises Problem (a ValueError) naming the file and the reason; nothing is written to the seed folder then.
    """
    safe = document_name(name)
    size = Path(upload).stat().st_size
    if size > max_bytes:
        raise Problem("too_large", name=safe, size=f"{size / 2**20:.1f}", limit=f"{max_bytes / 2**20:.0f}")
    seeds.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=seeds))
    try:
        staged = staging / safe
        shutil.copyfile(upload, staged)
        try:
            parse_file(staged)
        except (UnreadableDocument, UnicodeDecodeError) as error:
            reason = Problem("undecodable") if isinstance(error, UnicodeDecodeError) else error
            raise Problem("refused", name=safe, reason=reason) from None
        os.replace(staged, seeds / safe)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return safe


def remove_document(seeds: Path, name: str) -> None:
    """Delete one document of the seed folder, named exactly as listed (nothing outside the folder can be named)."""
    path = seeds / name
    if Path(name).name != name or not is_document(path):
        raise Problem("no_such_document", name=name)
    path.unlink()


def documents(seeds: Path) -> list[str]:
    """The names of the seed folder's documents, sorted."""
    return sorted(p.name for p in seeds.iterdir() if is_document(p)) if seeds.is_dir() else []
