"""All settings in one place: defaults, overridable by environment variables and by arguments."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_MODEL = "intfloat/multilingual-e5-small"
QUERY_PROMPT = "query: "
PASSAGE_PROMPT = "passage: "
# How the model is run: "torch" (sentence-transformers), "onnx" (onnxruntime, fp32: the same vectors, faster, no torch
# at run time), "onnx-int8" (passages through int8 weights, questions through fp32: faster builds, slightly different
# vectors and declines). The default was measured side by side with `python -m benchmarks.backends` (README).
BACKENDS = ("torch", "onnx", "onnx-int8")
DEFAULT_BACKEND = "onnx"
# Where passage vectors and BM25 are searched: "faiss" (embedded FAISS + bm25s, in the index folder), a Milvus server URI
# ("http://host:19530"), or a path ending in ".db" (a local milvus-lite file). See rag/store_milvus.py and the README.
DEFAULT_STORE = "faiss"
# How the reader chooses: "fast" (a linear model over features of the retrieval's own vectors: no second model call) or
# "cross" (then the best candidates re-read by a cross-encoder, rag/cross_encoder.py: tens of milliseconds more).
READER_MODES = ("fast", "cross")
MILVUS_LITE_SUFFIX = ".db"
MILVUS_DENSE_INDEX = "FLAT"  # exact inner product, as FAISS's IndexFlatIP: the same dense ranking in both stores
MILVUS_ANALYZER = {"tokenizer": "jieba"}  # Milvus's built-in Chinese analyzer (jieba, search mode)
BM25_K1, BM25_B = 1.5, 0.75  # bm25s's defaults (rag/index.py), given to Milvus too so both stores score BM25 alike
MILVUS_MAX_TEXT_BYTES = 65535  # Milvus's largest VARCHAR
MILVUS_INSERT_ROWS = 1000  # rows sent in one insert call (a gRPC message stays far below its size limit)


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def cache_dir() -> Path:
    """Where materialised models and the embedding cache live (outside git)."""
    base = os.environ.get("RAG_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "policy-rag"
    )
    return Path(base)


def milvus_uri(store: str) -> str | None:
    """The Milvus URI a store setting names (a milvus-lite file as an absolute path); None for the embedded FAISS."""
    if store == DEFAULT_STORE:
        return None
    return str(Path(store).expanduser().resolve()) if store.endswith(MILVUS_LITE_SUFFIX) else store


@dataclass(frozen=True)
class CrossEncoderSettings:
    """The second-stage reader: e5-small's first layers reading question and sentence together (rag/cross_encoder.py)."""

    weights: Path = PROJECT_ROOT / "rag" / "cross_encoder.safetensors"  # `python -m benchmarks.fit_cross_encoder` writes it
    layers: int = 6  # of the model's 12: half the cost; training ran at 29 pairs/s with 6, 15 with 12 (2 cores)
    rank: int = 8  # of the low-rank adapters
    alpha: int = 16
    targets: tuple[str, ...] = ("query", "key", "value", "dense")  # every linear map of a BERT layer
    max_tokens: int = 128  # a pair longer than this loses the end of its sentence
    candidates: int = 6  # the first stage's best sentences it re-reads


@dataclass(frozen=True)
class ReaderSettings:
    """How the reader quotes and when it declines; its learned weights are a file written by benchmarks.fit_reader."""

    weights: Path = PROJECT_ROOT / "rag" / "reader_weights.json"  # `python -m benchmarks.fit_reader` writes it
    decline_below: float | None = None  # P(answered) below which the reader declines; None: the fitted threshold
    # Further sentences are quoted while their logit is within this of the best one's; 0.5 keeps quotes as short as
    # the previous reader's on the fitting data (67 characters on CMRC trial, 62 on DRCD).
    margin: float = 0.5
    max_sentences: int = 3
    duplicate_overlap: float = 0.6  # bigram Jaccard above which two sentences count as the same
    max_quote_chars: int = 150  # a longer sentence is quoted by its answering clauses, cut at ，；： boundaries
    min_quote_chars: int = 40  # … at least this long: a lead-in clause (工业领域，) alone answers nothing
    mode: str = "fast"  # one of READER_MODES; env RAG_READER
    cross: CrossEncoderSettings = field(default_factory=CrossEncoderSettings)


@dataclass(frozen=True)
class DenseSettings:
    """How passage vectors are searched: exactly up to flat_max_passages, through an HNSW graph above (benchmarks.scale)."""

    flat_max_passages: int = 50_000  # an exact search costs this many rows × dim multiply-adds; a graph search barely grows
    hnsw_m: int = 32  # graph neighbours per vector
    hnsw_ef_construction: int = 80  # candidates kept while linking a vector in
    hnsw_ef_search: int = 1536  # candidates kept while searching, applied at load: recall@10 0.95 at 10⁶ (0.81 at 384)


@dataclass(frozen=True)
class Settings:
    """Paths, model and tuning knobs; `Settings.from_env()` reads RAG_* variables."""

    seeds: Path = PROJECT_ROOT / "seeds"
    index: Path = PROJECT_ROOT / "index"
    model: str = DEFAULT_MODEL
    backend: str = DEFAULT_BACKEND  # one of BACKENDS; env RAG_BACKEND
    store: str = DEFAULT_STORE  # "faiss", a Milvus URI or a milvus-lite ".db" path; env RAG_STORE
    onnx_threads: int = 0  # onnxruntime threads per call; 0: one per core
    # corpus
    max_passage_chars: int = 480
    batch_size: int = 32
    build_processes: int = 0  # workers that tokenise a large corpus for keyword search (0: one a core)
    # retrieval
    top_k: int = 5
    max_top_k: int = 50
    depth: int = 50  # candidates each ranking contributes to fusion
    sentence_depth: int = 50  # best-matching sentences whose passages join the dense ranking (0: passage vectors only)
    # ... searched exhaustively up to this many sentences (about 5 ms); above, only the dense candidates' sentences count
    sentence_search_max: int = 20_000
    dense: DenseSettings = field(default_factory=DenseSettings)
    fusion: str = "weighted"  # measured better than "rrf" on CMRC 2018 (python -m benchmarks.cmrc)
    rrf_k: int = 60
    keyword_weight: float = 0.1
    # answering
    reader: ReaderSettings = field(default_factory=ReaderSettings)
    max_question_chars: int = 500
    # serving: how often ask() looks at the seed files' names, sizes and times (0: never) to rebuild in the background
    seed_check_seconds: float = 5.0
    torch_threads: int = 1  # CPU threads of the model (0: torch default, one a core); 1 measured fastest serving on 2 cores
    query_batch_size: int = 32  # questions asked at once are embedded together, this many in one model call at most
    # ... and within that call, sorted by length, this many a forward pass: 32 padded to the longest cost 1.5× the CPU of 8
    query_encode_batch: int = 8
    query_batch_wait_ms: float = 0.0  # how long a question waits for others to share its call (0: only those queued)
    concurrency: int = 32  # questions the app answers at once (their embeddings batched; 4 measured slower)
    max_upload_mb: int = 50  # a larger file added from the page is refused (and Gradio stops the upload itself)

    @classmethod
    def from_env(cls, **overrides: object) -> "Settings":
        """Defaults, then RAG_SEEDS / RAG_INDEX / RAG_MODEL / RAG_BACKEND / RAG_STORE and RAG_<NAME> for a number, then explicit non-None overrides."""
        numbers = {f.name: {"int": int, "float": float}[f.type] for f in fields(cls) if f.type in ("int", "float")}
        s = cls(
            seeds=Path(_env("RAG_SEEDS", str(cls.seeds))),
            index=Path(_env("RAG_INDEX", str(cls.index))),
            model=_env("RAG_MODEL", cls.model),
            backend=_env("RAG_BACKEND", cls.backend),
            store=_env("RAG_STORE", cls.store),
            reader=ReaderSettings(mode=_env("RAG_READER", ReaderSettings.mode)),
            **{name: kind(os.environ[f"RAG_{name.upper()}"]) for name, kind in numbers.items() if os.environ.get(f"RAG_{name.upper()}")},
        )
        given = {k: (Path(v) if k in ("seeds", "index") else v) for k, v in overrides.items() if v is not None}
        return replace(s, **given)
