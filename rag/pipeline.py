"""The pipeline: one lazily loaded model and index, and ask() from question to cited answer."""
from __future__ import annotations

import sys
import threading
import time
import unicodedata
from dataclasses import replace
from functools import partial

from rag.answer import Answer, ReaderModel, compose, load_reader, read
from rag.batching import Batcher
from rag.config import READER_MODES, Settings
from rag.cross_encoder import CrossEncoder, load_cross_encoder
from rag.corpus import load_corpus
from rag.index import BuildReport, Index, IndexUnavailable, build_index, check_fresh, corpus_fingerprint, load_index
from rag.keywords import is_chinese
from rag.messages import Problem
from rag.model import Embedder, ModelError, encode_passages, encode_queries, load_model, model_fingerprint, resolve_model
from rag.readers import is_document
from rag.retrieve import retrieve

MIN_WORD_CHARS = 2  # a question without Chinese needs at least this many letters or digits


def clean_question(question: object, max_chars: int) -> str:
    """The question with control characters removed and whitespace collapsed; TypeError/ValueError if unusable."""
    if not isinstance(question, str):
        raise TypeError(f"The question must be a string, not {type(question).__name__}.")
    printable = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") else c for c in question)
    text = " ".join(printable.split())
    if not text:
        raise Problem("question_empty")
    if len(text) > max_chars:
        raise Problem("question_too_long", length=len(text), limit=max_chars)
    return text


def has_words(text: str) -> bool:
    """Whether a text can ask something: a Chinese character, or at least two letters or digits."""
    return is_chinese(text) or sum(c.isalnum() for c in text) >= MIN_WORD_CHARS


class Pipeline:
    """A model and an index for one settings; loads both on first use and is safe to share between threads."""

    def __init__(self, settings: Settings | None = None, model: Embedder | None = None):
        """`model`, if given, is an already loaded model for settings.model and settings.backend, to share between pipelines."""
        self.settings = settings or Settings.from_env()
        self._lock = threading.RLock()  # re-entrant: ensure_index holds it while build loads the model
        self._model = model
        self._index: Index | None = None
        self._reader: ReaderModel | None = None
        self._cross_encoder: CrossEncoder | None = None
        self.notice = ""  # why answers may be out of date: a stale index served because it could not be rebuilt
        self._seeds_seen: tuple = ()  # the seed files (name, size, mtime) the loaded index was checked against
        self._seeds_checked = 0.0
        self.rebuilding: threading.Thread | None = None  # a background rebuild after the seed files changed
        s = self.settings  # questions asked at once by several threads are embedded in one model call
        self._embed_questions = Batcher(self._encode_questions, s.query_batch_size, s.query_batch_wait_ms / 1000, "rag-questions")

    @property
    def model(self) -> Embedder:
        """The embedding model (sentence-transformers, or onnxruntime per settings.backend), loaded once."""
        with self._lock:
            if self._model is None:
                s = self.settings
                self._model = load_model(s.model, s.backend, s.torch_threads if s.backend == "torch" else s.onnx_threads)
            return self._model

    def _encode_questions(self, texts: list[str]) -> list:
        """Query vectors for a batch of questions, one model call."""
        return list(encode_queries(self.model, texts, self.settings.query_encode_batch))

    @property
    def cross_encoder(self) -> CrossEncoder | None:
        """The second-stage reader's cross-encoder, loaded once; None on the fast path (settings.reader.mode)."""
        s = self.settings
        if s.reader.mode not in READER_MODES:
            raise ModelError(f"unknown reader {s.reader.mode!r}: use one of {', '.join(READER_MODES)} (RAG_READER)")
        if s.reader.mode == "fast":
            return None
        with self._lock:
            if self._cross_encoder is None:
                self._cross_encoder = load_cross_encoder(resolve_model(s.model), s.reader.cross, s.onnx_threads)
            return self._cross_encoder

    @property
    def reader(self) -> ReaderModel:
        """The reader's learned weights, loaded once."""
        with self._lock:
            if self._reader is None:
                self._reader = load_reader(self.settings.reader.weights)
            return self._reader

    def _seed_files(self) -> tuple:
        """Name, size and modification time of each seed file: cheap to read, changes when a file does."""
        try:
            files = [p for p in self.settings.seeds.iterdir() if is_document(p)]
            return tuple(sorted((p.name, st.st_size, st.st_mtime_ns) for p in files for st in [p.stat()]))
        except OSError:
            return ()

    def watch_seeds(self) -> bool:
        """Start a background rebuild if the seed files changed since the index was loaded (checked every few seconds).

        Answers keep coming from the loaded index until the new one is switched in. True if a rebuild was started.
        """
        interval = self.settings.seed_check_seconds
        with self._lock:  # one thread looks and starts the rebuild; the others go on answering
            now = time.monotonic()
            if not interval or now - self._seeds_checked < interval or (self.rebuilding and self.rebuilding.is_alive()):
                return False
            self._seeds_checked = now
            if self._index is None or self._seed_files() == self._seeds_seen:
                return False
            self.rebuilding = threading.Thread(target=self._rebuild_quietly, name="rag-rebuild", daemon=True)
        print("The seed files changed: rebuilding the index in the background…", file=sys.stderr)
        self.rebuilding.start()
        return True

    def _rebuild_quietly(self) -> None:
        """A background rebuild: on failure keep answering from the old index, and say why once."""
        try:
            self.build(progress=False)
        except Exception as error:
            print(f"Rebuilding the index after the seed files changed failed: {error}", file=sys.stderr)

    def build(self, progress: bool = True) -> BuildReport:
        """Rebuild the index from the seed folder (reusing unchanged embeddings) and load it."""
        s = self.settings
        seen = self._seed_files()
        corpus = load_corpus(s.seeds, s.max_passage_chars)
        fingerprint = corpus_fingerprint(s.seeds, s.max_passage_chars)
        encode = partial(encode_passages, self.model, batch_size=s.batch_size, show_progress=progress)
        report = build_index(corpus, s.index, s.model, model_fingerprint(s.model, s.backend), encode, fingerprint, s.max_passage_chars,
                             s.dense, s.store, s.build_processes)
        with self._lock:
            self._index, self._seeds_seen, self.notice = load_index(s.index, s.dense), seen, ""
        return report

    def load_index(self) -> Index:
        """Load the index, checking it was built from the current seeds and model."""
        s = self.settings
        index = load_index(s.index, s.dense)
        check_fresh(index.manifest, s.seeds, s.max_passage_chars, s.model, model_fingerprint(s.model, s.backend), s.store)
        return index

    def ensure_index(self, progress: bool = True) -> Index:
        """The loaded index; builds it first (with a message) if it is missing, corrupt or stale."""
        with self._lock:
            if self._index is None:
                try:
                    seen = self._seed_files()
                    self._index, self._seeds_seen = self.load_index(), seen
                except IndexUnavailable as problem:
                    print(f"{problem} Building the index now…", file=sys.stderr)
                    try:
                        self.build(progress=progress)
                    except (OSError, ValueError) as error:  # a read-only folder, a full disk: serve the old index
                        if problem.reason != "stale":
                            raise
                        self._index, self._seeds_seen = load_index(self.settings.index, self.settings.dense), self._seed_files()
                        self.notice = f"{problem} It could not be rebuilt ({error}); answers come from the index as it was."
                        print(self.notice, file=sys.stderr)
            return self._index

    def ask(self, question: str, top_k: int | None = None) -> Answer:
        """Answer a question with sentences quoted from the articles, or abstain; see Answer."""
        s = self.settings
        text = clean_question(question, s.max_question_chars)
        top_k = s.top_k if top_k is None else int(top_k)
        if not 1 <= top_k <= s.max_top_k:
            raise Problem("top_k_range", limit=s.max_top_k, top_k=top_k)
        self.watch_seeds()
        index = self.ensure_index()
        reader, encoder = self.reader, self.cross_encoder
        _ = self.model  # loaded before the clock starts
        started = time.perf_counter()
        query_vector = self._embed_questions(text)
        hits = retrieve(index, query_vector, text, top_k, s)
        retrieved = time.perf_counter()
        if has_words(text):
            chosen, answered, abstained = read(index, hits, query_vector, text, reader, s.reader, encoder)
        else:  # emoji, punctuation, a lone letter: nothing was asked, so nothing is answered
            chosen, answered, abstained = [], 0.0, True
        done = time.perf_counter()
        timings = {"retrieve": (retrieved - started) * 1000, "answer": (done - retrieved) * 1000, "total": (done - started) * 1000}
        answer = compose(index, text, hits, chosen, answered, abstained, {k: round(v, 2) for k, v in timings.items()}, s.reader)
        return replace(answer, notice=self.notice) if self.notice else answer


_default: Pipeline | None = None
_default_lock = threading.Lock()


def default_pipeline() -> Pipeline:
    """The process-wide pipeline for the settings in the environment, created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Pipeline()
        return _default


def ask(question: str, top_k: int | None = None) -> Answer:
    """Answer a question from the default index (built on first use if missing)."""
    return default_pipeline().ask(question, top_k)
