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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import bm25s
import faiss
import numpy as np

import rag.clean
import rag.corpus
import rag.keywords
import rag.readers
from rag.corpus import Article, Corpus, Passage
from rag.readers import is_document
from rag.config import DEFAULT_STORE, milvus_uri
from rag.keywords import tokens

if TYPE_CHECKING:
    from rag.store_milvus import MilvusPassages

FORMAT_VERSION = 5
CURRENT = "CURRENT"  # names the active build folder inside the index folder; replaced atomically
LOCK = ".lock"  # held by the one process that builds and switches; readers never take it
BUILD_NAME = re.compile(r"^build-[\w.-]+$")
UNIT_NORM_TOLERANCE = 1e-2
MANIFEST = "manifest.json"
RECORDS = "records.json"
PASSAGE_INDEX = "passages.faiss"
SENTENCE_VECTORS = "sentence_vectors.npy"
BM25_DIR = "bm25"

# Encodes a list of texts as L2-normalised float32 rows (the caller decides batching and progress display).
Encoder = Callable[[list[str]], np.ndarray]


class IndexUnavailable(RuntimeError):
    """The index cannot be used as it is; `reason` is "missing", "corrupt" or "stale"."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Sentence:
    """One sentence of a passage, the unit an answer quotes."""

    text: str
    passage: int  # row of its passage in Index.passages


@dataclass(frozen=True)
class Index:
    """Everything answering needs, loaded once: records, vectors, the FAISS and BM25 indexes."""

    manifest: dict
    articles: dict[str, Article]
    passages: tuple[Passage, ...]
    sentences: tuple[Sentence, ...]
    passage_sentences: tuple[range, ...]  # rows of each passage's sentences in `sentences`
    dense: faiss.Index
    sentence_vectors: np.ndarray
    bm25: bm25s.BM25
    store: MilvusPassages | None = None  # where retrieval searches passages when the store is Milvus (else FAISS and bm25)


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


def _text_key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checksums(build: Path) -> dict[str, dict]:
    """Size and SHA-256 of every file of a build but the manifest, by relative path."""
    files = sorted(p for p in build.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {str(p.relative_to(build)): {"size": p.stat().st_size, "sha256": _sha256(p)} for p in files}


def _verify(build: Path, manifest: dict) -> None:
    """Raise IndexUnavailable("corrupt") unless every file of the build has the size and hash its manifest records."""
    recorded, actual = manifest.get("files") or {}, _checksums(build)
    if not recorded or actual != recorded:
        changed = sorted(n for n in set(recorded) | set(actual) if recorded.get(n) != actual.get(n)) or ["no checksums"]
        raise IndexUnavailable("corrupt", f"The index build {build.name} is damaged ({', '.join(changed[:3])} changed): rebuild it.")


def _previous_vectors(index_dir: Path, model_fingerprint: str) -> dict[str, np.ndarray]:
    """Vectors of the last build keyed by text hash, so a rebuild re-embeds only what changed; none from a damaged build."""
    try:
        index = load_index(index_dir)
    except IndexUnavailable:
        return {}
    if index.manifest.get("model_fingerprint") != model_fingerprint:
        return {}
    build = _active_build(index_dir)
    keys = json.loads((build / RECORDS).read_text(encoding="utf-8"))["vector_keys"]
    vectors = np.vstack([index.dense.reconstruct_n(0, index.dense.ntotal), index.sentence_vectors])
    return dict(zip(keys["passages"] + keys["sentences"], vectors))


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


def _embed(texts: list[str], encode: Encoder, cache: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str], int]:
    """Vectors for texts, from the cache where possible; returns (vectors, keys, number embedded now)."""
    keys = [_text_key(t) for t in texts]
    todo = sorted({k: t for k, t in zip(keys, texts) if k not in cache}.items())
    if todo:
        fresh = encode([t for _, t in todo])
        cache.update(zip((k for k, _ in todo), fresh))
    dim = next(iter(cache.values())).shape[0] if cache else 0
    vectors = np.array([cache[k] for k in keys], dtype=np.float32).reshape(len(keys), dim)
    return vectors, keys, len(todo)


def build_index(
    corpus: Corpus,
    index_dir: Path,
    model_name: str,
    model_fingerprint: str,
    encode: Encoder,
    fingerprint: str,
    max_passage_chars: int,
    store: str = DEFAULT_STORE,
) -> BuildReport:
    """Write the index of a corpus into index_dir (and its passages into a Milvus `store`); the previous stays active until the new one is complete."""
    started = time.perf_counter()
    index_dir = Path(index_dir)
    if not corpus.passages:
        raise ValueError("No text to index: every file was empty or unreadable.")
    with build_lock(index_dir):
        return _build_locked(corpus, index_dir, model_name, model_fingerprint, encode, fingerprint, max_passage_chars, store, started)


def _build_locked(corpus: Corpus, index_dir: Path, model_name: str, model_fingerprint: str, encode: Encoder, fingerprint: str,
                  max_passage_chars: int, store: str, started: float) -> BuildReport:
    articles = {a.id: a for a in corpus.articles}
    sentences = [s for p in corpus.passages for s in p.sentences]
    cache = _previous_vectors(index_dir, model_fingerprint)
    passage_texts = [passage_text_for_embedding(p, articles[p.article_id]) for p in corpus.passages]
    # One encoder call for passages and sentences keeps a single progress bar and full batches.
    vectors, keys, embedded = _embed(passage_texts + sentences, encode, cache)
    n = len(passage_texts)

    index_dir.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".build-", dir=index_dir))
    milvus = _milvus_collection(store, build)
    try:
        dense = faiss.IndexFlatIP(vectors.shape[1])
        dense.add(vectors[:n])
        faiss.write_index(dense, str(build / PASSAGE_INDEX))
        np.save(build / SENTENCE_VECTORS, vectors[n:])
        bm25 = bm25s.BM25()
        bm25.index([tokens(t) for t in passage_texts], show_progress=False)
        bm25.save(str(build / BM25_DIR), show_progress=False)
        records = {
            "articles": [asdict(a) for a in corpus.articles],
            "passages": [asdict(p) for p in corpus.passages],
            "vector_keys": {"passages": keys[:n], "sentences": keys[n:]},
        }
        (build / RECORDS).write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        manifest = {
            "format_version": FORMAT_VERSION,
            "model": model_name,
            "model_fingerprint": model_fingerprint,
            "corpus_fingerprint": fingerprint,
            "max_passage_chars": max_passage_chars,
            "dim": int(vectors.shape[1]),
            "counts": {"files": len(corpus.files), "articles": len(corpus.articles),
                       "passages": n, "sentences": len(sentences)},
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": _checksums(build),
        }
        if milvus:
            from rag.store_milvus import add_passages

            add_passages(*milvus, vectors[:n], passage_texts)
            manifest["milvus"] = dict(zip(("uri", "collection"), milvus))
        (build / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
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


def _unit_rows(vectors: np.ndarray) -> bool:
    """Whether every row is a finite unit vector, as the model's normalised embeddings are."""
    return bool(np.isfinite(vectors).all() and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=UNIT_NORM_TOLERANCE))


def load_index(index_dir: Path) -> Index:
    """Load the active build, checking every file's checksum and the vectors; raise IndexUnavailable with a clear message."""
    build = _active_build(Path(index_dir))
    try:
        manifest = json.loads((build / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("format_version") != FORMAT_VERSION:
            raise IndexUnavailable("stale", f"The index in {index_dir} has an old format: rebuild it.")
        _verify(build, manifest)
        records = json.loads((build / RECORDS).read_text(encoding="utf-8"))
        articles = {a["id"]: Article(**{**a, "authors": tuple(a["authors"])}) for a in records["articles"]}
        passages = tuple(Passage(**{**p, "sentences": tuple(p["sentences"]), "pages": tuple(p["pages"])}) for p in records["passages"])
        sentences, ranges = [], []
        for row, p in enumerate(passages):
            start = len(sentences)
            sentences += [Sentence(s, row) for s in p.sentences]
            ranges.append(range(start, len(sentences)))
        dense = faiss.read_index(str(build / PASSAGE_INDEX))
        sentence_vectors = np.load(build / SENTENCE_VECTORS)
        bm25 = bm25s.BM25.load(str(build / BM25_DIR), show_progress=False)
        counts = manifest["counts"]
        consistent = dense.ntotal == len(passages) == counts["passages"] and len(sentence_vectors) == len(sentences) == counts["sentences"]
        store = _open_store(manifest.get("milvus"), len(passages))
    except IndexUnavailable:
        raise
    except Exception as e:  # whatever a damaged file makes a reader raise (EOFError, IndexError, …)
        raise IndexUnavailable("corrupt", f"The index in {index_dir} is damaged ({type(e).__name__}: {e}): rebuild it.") from e
    if not consistent or not (_unit_rows(dense.reconstruct_n(0, dense.ntotal)) and _unit_rows(sentence_vectors)):
        raise IndexUnavailable("corrupt", f"The index in {index_dir} is inconsistent (counts or vectors): rebuild it.")
    return Index(manifest, articles, passages, tuple(sentences), tuple(ranges), dense, sentence_vectors, bm25, store)


def _open_store(milvus: dict | None, rows: int) -> MilvusPassages | None:
    """The build's Milvus collection, checked to hold its passages (IndexUnavailable if not); None for FAISS."""
    if not milvus:
        return None
    from rag.store_milvus import open_passages

    return open_passages(milvus["uri"], milvus["collection"], rows)
