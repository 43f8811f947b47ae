"""A build's integrity: every file's size at every load, its SHA-256 once per version of the file.

Hashing gigabytes at every load is too slow, so after a build's files have matched their hashes a stamp records each
file's size, inode, modification and change times. A later load hashes only the files whose stat differs from the stamp:
any write to a file (or a copy of it) changes its change time, which no user can set back. A folder where the stamp
cannot be written (read-only) is hashed at every load, as before.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

MANIFEST = "manifest.json"
VERIFIED = "verified.json"
HASH_BLOCK_BYTES = 1 << 20


class Damaged(ValueError):
    """A build's files differ from what its manifest records."""


def sha256(path: Path) -> str:
    """The SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(HASH_BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(build: Path) -> list[Path]:
    """The build's data files: everything but the manifest and the stamp (and a stamp being written)."""
    return sorted(p for p in build.rglob("*") if p.is_file() and p.name != MANIFEST and not p.name.lstrip(".").startswith(VERIFIED))


def checksums(build: Path) -> dict[str, dict]:
    """Size and SHA-256 of every data file of a build, by relative path."""
    return {str(p.relative_to(build)): {"size": p.stat().st_size, "sha256": sha256(p)} for p in _files(build)}


def _stats(build: Path) -> dict[str, list[int]]:
    """Size, inode, modification and change time of every data file, by relative path."""
    return {str(p.relative_to(build)): [s.st_size, s.st_ino, s.st_mtime_ns, s.st_ctime_ns] for p in _files(build) for s in [p.stat()]}


def _stamp(build: Path) -> dict:
    """The stats recorded by the last full verification, or {} if there is none."""
    try:
        return json.loads((build / VERIFIED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_stamp(build: Path, stats: dict) -> None:
    """Record the verified stats atomically; a folder that cannot be written keeps hashing at every load."""
    try:
        handle, path = tempfile.mkstemp(prefix=f".{VERIFIED}.", dir=build)
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            json.dump(stats, f)
        os.replace(path, build / VERIFIED)
    except OSError:
        pass


def verify(build: Path, recorded: dict[str, dict]) -> None:
    """Raise Damaged unless the build holds exactly the recorded files, at their sizes and, once per version, hashes."""
    stats = _stats(build)
    sizes = {name: stat[0] for name, stat in stats.items()}
    changed = sorted(n for n in set(recorded) | set(sizes) if (recorded.get(n) or {}).get("size") != sizes.get(n))
    if not recorded or changed:
        raise Damaged(f"{', '.join(changed[:3]) or 'no checksums'} changed")
    stamp = _stamp(build)
    unverified = [name for name in recorded if stamp.get(name) != stats[name]]
    changed = [name for name in unverified if sha256(build / name) != recorded[name]["sha256"]]
    if changed:
        raise Damaged(f"{', '.join(changed[:3])} changed")
    if unverified:
        _write_stamp(build, stats)
