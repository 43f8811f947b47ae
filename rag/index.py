"""The persisted index: build it atomically from a corpus, load it back with checks for corruption and staleness."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import bm25s
import faiss
import numpy as np

import rag.clean
import rag.corpus
import rag.keywords
import rag.readers
from rag.config import DenseSettings
from rag.corpus import Article, Corpus, Passage
from rag.config import DEFAULT_STORE, milvus_uri
from rag.dense import build_dense, dense_kind, set_search
from rag.integrity import MANIFEST, Damaged, checksums, verify
from rag.keywords import corpus_tokens
from rag.readers import is_document
from rag.records import PassageSentences, Passages, Sentences, open_records, read_articles, write_records

if TYPE_CHECKING:
    from rag.store_milvus import MilvusPassages

FORMAT_VERSION = 6
CURRENT = "CURRENT"  # names the active build folder inside the index folder; replaced atomically
LOCK = ".lock"  # held by the one process that builds and switches; readers never take it
BUILD_NAME = re.compile(r"^build-[\w.-]+$")
UNIT_NORM_TOLERANCE = 1e-2
PASSAGE_INDEX = "passages.faiss"
SENTENCE_VECTORS = "sentence_vectors.npy"  # as SENTENCE_DTYPE, memory-mapped when loaded
SENTENCE_DTYPE = np.float16  # the seed dev set answers exactly as with float32 (README); passage vectors: rag.dense
VECTOR_KEYS = "vector_keys.npy"  # the SHA-1 of each passage's then each sentence's text, for reuse by the next build
KEY_DTYPE = "S20"
EMBED_TEXTS = 65_536  # texts sent to the encoder at a time, so a large build holds one block of float32 vectors
BM25_DIR = "bm25"

# Encodes a list of texts as L2-normalised float32 rows (the caller decides batching and progress display).
Encoder = Callable[[list[str]], np.ndarray]


class IndexUnavailable(RuntimeError):
    """The index cannot be used as it is; `reason` is "missing", "corrupt" or "stale"."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Index:
    """Everything answering needs: articles in memory; passages, sentences and vectors read from disk by row."""

    manifest: dict
    articles: dict[str, Article]
    passages: Passages
    sentences: Sentences
    passage_sentences: PassageSentences  # rows of each passage's sentences in `sentences`
    dense: faiss.Index
    sentence_vectors: np.ndarray  # memory-mapped, SENTENCE_DTYPE
    bm25: bm25s.BM25
    store: MilvusPassages | None = None  # where retrieval searches passages when the store is Milvus (else FAISS and bm25)

    @cached_property
    def sentence_matrix(self) -> np.ndarray:
        """All sentence vectors as float32 in memory, made once: for searching every sentence of a small index (a
        float16 → float32 conversion per question cost 27 ms at 20,000 sentences, the product on this copy 2.7 ms)."""
        return np.asarray(self.sentence_vectors, dtype=np.float32)

    @cached_property
    def article_passages(self) -> dict[str, list[int]]:
        """Each article's passage rows in order, gathered once: showing an article then reads its passages only."""
        rows: dict[str, list[int]] = {}
        for row, passage in enumerate(self.passages):
            rows.setdefault(passage.article_id, []).append(row)
        return rows


@dataclass(frozen=True)
class BuildReport:
    """What a build did, for the summary line and the benchmark."""

    path: Path
    files: int
    skipped: tuple[str, ...]
    articles: int
    passages: int
    sentences: int
    embedded: int  # texts sent to the model
    reused: int  # texts whose vectors came from the previous build
    seconds: float


def passage_text_for_embedding(passage: Passage, article: Article) -> str:
    """The text the model sees for a passage: its article title and section give it context."""
    return "\n".join(part for part in (article.title, passage.section, passage.text) if part)


def fingerprint(max_passage_chars: int, parts: Iterable[bytes] = ()) -> str:
    """A hash of the format, the passage bound, the code that reads, cleans, splits and tokenises, and the given parts."""
    digest = hashlib.sha256(f"v{FORMAT_VERSION}:{max_passage_chars}".encode())
    readers = sorted(Path(rag.readers.__file__).parent.glob("*.py"))
    for path in [Path(module.__file__) for module in (rag.clean, rag.corpus, rag.keywords)] + readers:
        digest.update(path.read_bytes())
    for part in parts:
        digest.update(part)
    return digest.hexdigest()[:16]


def corpus_fingerprint(seeds: Path, max_passage_chars: int) -> str:
    """A hash of the seed files, the splitting setting and the splitting code: it changes when the corpus would."""
    files = sorted(p for p in Path(seeds).iterdir() if is_document(p))
    return fingerprint(max_passage_chars, (path.name.encode() + b"\0" + _bytes_or_mark(path) + b"\0" for path in files))


def _bytes_or_mark(path: Path) -> bytes:
    """A file's bytes, or a fixed mark for one that cannot be read (it is skipped when building, too)."""
    try:
        return path.read_bytes()
    except OSError:
        return b"\0unreadable"


def _text_keys(texts: list[str]) -> np.ndarray:
    """The SHA-1 digest of each text: what a vector is cached by."""
    return np.array([hashlib.sha1(t.encode()).digest() for t in texts], dtype=KEY_DTYPE)


def _active_build(index_dir: Path) -> Path:
    pointer = index_dir / CURRENT
    if not pointer.is_file():
        raise IndexUnavailable("missing", f"No index in {index_dir}: run `python -m rag.build` to build it.")
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, ValueError) as e:
        raise IndexUnavailable("corrupt", f"The index pointer {pointer} is unreadable ({e}): rebuild the index.") from e
    if not BUILD_NAME.match(name) or not (index_dir / name).is_dir():
        raise IndexUnavailable("corrupt", f"The index pointer {pointer} names no build ({name[:40]!r}): rebuild the index.")
    return index_dir / name


@dataclass(frozen=True)
class _Table:
    """The vectors of a build's texts, passages then sentences, by row: passage rows in memory, sentence rows on disk."""

    passages: np.ndarray
    sentences: np.ndarray

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), self.passages.shape[1]), dtype=np.float32)
        sentence = rows >= len(self.passages)
        out[~sentence] = self.passages[rows[~sentence]]
        out[sentence] = self.sentences[rows[sentence] - len(self.passages)]
        return out

    def __setitem__(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        sentence = rows >= len(self.passages)
        self.passages[rows[~sentence]] = vectors[~sentence]
        self.sentences[rows[sentence] - len(self.passages)] = vectors[sentence]


def _new_table(passages: int, sentences: int, dim: int, path: Path) -> _Table:
    """Passage vectors as float32 in memory (for the FAISS index), sentence vectors written to a .npy file."""
    return _Table(np.empty((passages, dim), dtype=np.float32), np.lib.format.open_memmap(path, "w+", SENTENCE_DTYPE, (sentences, dim)))


@dataclass(frozen=True)
class _Previous:
    """The last build's vectors and their text keys, so a rebuild re-embeds only what changed."""

    keys: np.ndarray  # sorted
    rows: np.ndarray  # the row in `vectors` of each sorted key
    vectors: _Table

    def find(self, keys: np.ndarray) -> np.ndarray:
        """The row in `vectors` of each key, -1 for a key it does not hold."""
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[at] == keys, self.rows[at], -1)


def _previous(index_dir: Path, model_fingerprint: str) -> _Previous | None:
    """The vectors of the active build, if it is sound and of the same model; none from a damaged build."""
    try:
        index = load_index(index_dir)
    except IndexUnavailable:
        return None
    if index.manifest.get("model_fingerprint") != model_fingerprint:
        return None
    build = _active_build(index_dir)
    keys = np.load(build / VECTOR_KEYS)
    order = np.argsort(keys, kind="stable")
    passages = index.dense.reconstruct_n(0, index.dense.ntotal)  # exact from a flat index, float16 values from a graph
    return _Previous(keys[order], order, _Table(passages, index.sentence_vectors))


@contextmanager
def build_lock(index_dir: Path):
    """Hold the index folder's build lock: a second builder waits here until the first has switched."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with (index_dir / LOCK).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _unit_rows(vectors: np.ndarray) -> bool:
    """Whether every row is a finite unit vector, as the model's normalised embeddings are."""
    return bool(np.isfinite(vectors).all() and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=UNIT_NORM_TOLERANCE))


def _copy_rows(target: _Table, rows: np.ndarray, source: _Table, source_rows: np.ndarray) -> None:
    """target[rows] = source[source_rows], a block at a time."""
    for start in range(0, len(rows), EMBED_TEXTS):
        block = slice(start, start + EMBED_TEXTS)
        target[rows[block]] = source[source_rows[block]]


def _embed(passages: list[str], sentences: list[str], encode: Encoder, previous: _Previous | None,
           path: Path) -> tuple[_Table, np.ndarray, int]:
    """The texts' vectors, the previous build's where it has them, sentences written to `path`; (vectors, keys, embedded).

    Each distinct new text is embedded once, in the order of its key, EMBED_TEXTS at a time: one encoder call for
    passages and sentences together keeps a single progress bar and full batches.
    """
    texts = passages + sentences
    keys = _text_keys(texts)
    found = previous.find(keys) if previous else np.full(len(keys), -1)
    missing = np.flatnonzero(found < 0)
    _, first, inverse = np.unique(keys[missing], return_index=True, return_inverse=True)
    todo = missing[first]  # one row of each distinct new text
    vectors = None if previous is None else _new_table(len(passages), len(sentences), previous.vectors.passages.shape[1], path)
    for start in range(0, len(todo), EMBED_TEXTS):
        rows = todo[start : start + EMBED_TEXTS]
        fresh = encode([texts[r] for r in rows])
        if not _unit_rows(fresh):
            raise ValueError("The model returned vectors that are not finite unit vectors.")
        if vectors is None:
            vectors = _new_table(len(passages), len(sentences), fresh.shape[1], path)
        vectors[rows] = fresh
    if previous:
        reused = np.flatnonzero(found >= 0)
        _copy_rows(vectors, reused, previous.vectors, found[reused])
    source = todo[inverse]  # a text that occurs again takes its first occurrence's vector
    repeated = source != missing
    _copy_rows(vectors, missing[repeated], vectors, source[repeated])
    vectors.sentences.flush()
    return vectors, keys, len(todo)


def build_index(
    corpus: Corpus,
    index_dir: Path,
    model_name: str,
    model_fingerprint: str,
    encode: Encoder,
    fingerprint: str,
    max_passage_chars: int,
    dense: DenseSettings = DenseSettings(),
    store: str = DEFAULT_STORE,
    processes: int = 0,
) -> BuildReport:
    """Write the index of a corpus into index_dir (and its passages into a Milvus `store`); the previous stays active until the new one is complete.

    ``processes``: how many workers tokenise a large corpus for keyword search (0: one a core).
    """
    started = time.perf_counter()
    index_dir = Path(index_dir)
    if not corpus.passages:
        raise ValueError("No text to index: every file was empty or unreadable.")
    with build_lock(index_dir):
        return _build_locked(corpus, index_dir, model_name, model_fingerprint, encode, fingerprint, max_passage_chars, dense, store,
                             processes, started)


def _build_locked(corpus: Corpus, index_dir: Path, model_name: str, model_fingerprint: str, encode: Encoder, fingerprint: str,
                  max_passage_chars: int, dense_settings: DenseSettings, store: str, processes: int, started: float) -> BuildReport:
    articles = {a.id: a for a in corpus.articles}
    sentences = [s for p in corpus.passages for s in p.sentences]
    previous = _previous(index_dir, model_fingerprint)
    passage_texts = [passage_text_for_embedding(p, articles[p.article_id]) for p in corpus.passages]
    n = len(passage_texts)

    index_dir.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".build-", dir=index_dir))
    milvus = _milvus_collection(store, build)
    try:
        vectors, keys, embedded = _embed(passage_texts, sentences, encode, previous, build / SENTENCE_VECTORS)
        np.save(build / VECTOR_KEYS, keys)
        faiss.write_index(build_dense(vectors.passages, dense_settings), str(build / PASSAGE_INDEX))
        bm25 = bm25s.BM25()
        bm25.index(corpus_tokens(passage_texts, processes), show_progress=False)
        bm25.save(str(build / BM25_DIR), show_progress=False)
        write_records(build, corpus.articles, corpus.passages)
        manifest = {
            "format_version": FORMAT_VERSION,
            "model": model_name,
            "model_fingerprint": model_fingerprint,
            "corpus_fingerprint": fingerprint,
            "max_passage_chars": max_passage_chars,
            "dim": int(vectors.passages.shape[1]),
            "dense": dense_kind(n, dense_settings),
            "counts": {"files": len(corpus.files), "articles": len(corpus.articles),
                       "passages": n, "sentences": len(sentences)},
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": checksums(build),
        }
        if milvus:
            from rag.store_milvus import add_passages

            add_passages(*milvus, vectors.passages, passage_texts)
            manifest["milvus"] = dict(zip(("uri", "collection"), milvus))
        (build / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
        del vectors  # the memory map is closed before the folder is renamed
        _activate(index_dir, build, store)
    except BaseException:
        if build.exists():  # not switched in (it is renamed first): its collection goes with it
            _drop_collection(store, build)
        shutil.rmtree(build, ignore_errors=True)
        raise
    return BuildReport(index_dir, len(corpus.files), corpus.skipped, len(corpus.articles), n, len(sentences),
                       embedded, len(keys) - embedded, time.perf_counter() - started)


def _milvus_collection(store: str, build: Path) -> tuple[str, str] | None:
    """(URI, collection) where a build's passages go in a Milvus store, named after its folder; None for FAISS."""
    uri = milvus_uri(store)
    if not uri:
        return None
    from rag.store_milvus import collection_name

    return uri, collection_name(build.name.rsplit("-", 1)[-1])


def _drop_collection(store: str, build: Path) -> None:
    """Drop a removed build's Milvus collection, if the store is Milvus."""
    milvus = _milvus_collection(store, build)
    if milvus:
        from rag.store_milvus import drop_passages

        drop_passages(*milvus)


def _activate(index_dir: Path, build: Path, store: str = DEFAULT_STORE) -> None:
    """Point CURRENT at the new build (an atomic rename), then remove all builds but it and the one it replaces.

    Called with the build lock held, so no other build is being written: any other `.build-*` is a killed build's.
    The replaced build stays until the next switch, for a reader that read CURRENT just before this one; a removed
    build's Milvus collection goes with it.
    """
    final = index_dir / f"build-{time.strftime('%Y%m%d-%H%M%S')}-{build.name.removeprefix('.build-')}"  # unique
    build.rename(final)
    try:
        previous = _active_build(index_dir)
    except IndexUnavailable:
        previous = None
    if (index_dir / CURRENT).is_dir():  # not a pointer: clear the way for one
        shutil.rmtree(index_dir / CURRENT)
    handle, pointer = tempfile.mkstemp(prefix=f".{CURRENT}.", dir=index_dir)
    with os.fdopen(handle, "w", encoding="utf-8") as f:
        f.write(final.name)
    os.chmod(pointer, 0o644)
    os.replace(pointer, index_dir / CURRENT)
    for old in index_dir.iterdir():
        if old not in (final, previous) and (old.name.startswith((".build-", f".{CURRENT}.")) or (old.is_dir() and old.name.startswith("build-"))):
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
                _drop_collection(store, old)
            else:
                old.unlink(missing_ok=True)


def check_fresh(manifest: dict, seeds: Path | None, max_passage_chars: int, model_name: str, model_fingerprint: str | None,
                store: str = DEFAULT_STORE) -> None:
    """Raise IndexUnavailable("stale") if the index was built from another corpus, passage bound, model or store."""
    if manifest.get("model") != model_name or (model_fingerprint and manifest.get("model_fingerprint") != model_fingerprint):
        raise IndexUnavailable("stale", f"The index was built with model {manifest.get('model')!r}, not {model_name!r}: rebuild it.")
    if milvus_uri(store) != manifest.get("milvus", {}).get("uri"):
        raise IndexUnavailable("stale", f"The index was not built into the store {store!r}: rebuild it.")
    if seeds is not None and Path(seeds).is_dir():
        if corpus_fingerprint(seeds, max_passage_chars) != manifest.get("corpus_fingerprint"):
            raise IndexUnavailable("stale", f"The seed files in {seeds} or the passage settings changed since the index was built: rebuild it.")


def load_index(index_dir: Path, dense_settings: DenseSettings = DenseSettings()) -> Index:
    """Load the active build: sizes, shapes and counts checked every time, hashes once (rag.integrity); IndexUnavailable if unusable."""
    build = _active_build(Path(index_dir))
    try:
        manifest = json.loads((build / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("format_version") != FORMAT_VERSION:
            raise IndexUnavailable("stale", f"The index in {index_dir} has an old format: rebuild it.")
        verify(build, manifest.get("files") or {})
        articles = read_articles(build)
        passages, sentences, passage_sentences = open_records(build)
        dense = faiss.read_index(str(build / PASSAGE_INDEX))
        set_search(dense, dense_settings)
        sentence_vectors = np.load(build / SENTENCE_VECTORS, mmap_mode="r")
        bm25 = bm25s.BM25.load(str(build / BM25_DIR), mmap=True, show_progress=False)
        counts = manifest["counts"]
        consistent = (dense.ntotal == len(passages) == counts["passages"] and len(sentences) == counts["sentences"]
                      and sentence_vectors.dtype == SENTENCE_DTYPE and sentence_vectors.shape == (len(sentences), dense.d))
        store = _open_store(manifest.get("milvus"), len(passages))
    except IndexUnavailable:
        raise
    except Damaged as e:
        raise IndexUnavailable("corrupt", f"The index build {build.name} is damaged ({e}): rebuild it.") from e
    except Exception as e:  # whatever a damaged file makes a reader raise (EOFError, IndexError, …)
        raise IndexUnavailable("corrupt", f"The index in {index_dir} is damaged ({type(e).__name__}: {e}): rebuild it.") from e
    if not consistent:
        raise IndexUnavailable("corrupt", f"The index in {index_dir} is inconsistent (counts or vectors): rebuild it.")
    return Index(manifest, articles, passages, sentences, passage_sentences, dense, sentence_vectors, bm25, store)


def _open_store(milvus: dict | None, rows: int) -> MilvusPassages | None:
    """The build's Milvus collection, checked to hold its passages (IndexUnavailable if not); None for FAISS."""
    if not milvus:
        return None
    from rag.store_milvus import open_passages

    return open_passages(milvus["uri"], milvus["collection"], rows)
