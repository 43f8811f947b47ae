"""The public Chinese QA sets in ../shared/data as indexed document folders: load, split, index and embed, cached.

Each SQuAD-style set becomes a corpus with one article per context, as a user's folder of documents would be. Fitting
and measuring never share questions: CMRC 2018 trial is for fitting, CMRC 2018 dev for measuring, and DRCD dev and
SQuAD 2.0 zh are split by article (title), 80% for fitting and 20% held out for measuring.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.config import DEFAULT_BACKEND, PROJECT_ROOT, Settings, cache_dir
from rag.corpus import Article, Corpus, passages_of
from rag.index import Index, build_index, fingerprint, load_index
from rag.model import encode_passages, encode_queries, model_fingerprint

DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"
SETS = {
    "cmrc-trial": DATA_DIR / "cmrc2018" / "cmrc2018_trial.json",
    "cmrc-dev": DATA_DIR / "cmrc2018" / "cmrc2018_dev.json",
    "drcd": DATA_DIR / "drcd" / "DRCD_dev.json",  # Traditional Chinese
    "squad2-zh": DATA_DIR / "squad2-zh" / "dev-v2.0-zh.json",  # with unanswerable questions
}
# Questions written for fitting over the project's own seed files (not the seed dev set, which is for measuring).
SEED_FIT_DIR = PROJECT_ROOT / "benchmarks" / "data"
SEED_FIT_GLOB = "seed_fit_questions*.jsonl"
_SPACE = re.compile(r"\s+")
HELD_OUT_SHARE = 0.2  # of the articles of a set that is split
SPLIT_SETS = ("drcd", "squad2-zh")
STACKING_SHARE = 0.25  # of the fitting articles: kept from the cross-encoder's training, for fitting the second stage


@dataclass(frozen=True)
class Question:
    text: str
    context: str  # the gold context's article id
    answers: tuple[str, ...]  # empty: unanswerable
    held_out: bool  # never fitted on
    stacking: bool = False  # fitted on by the second stage only, never by the cross-encoder


def available(name: str) -> bool:
    """Whether the set's file is there (../shared may be absent)."""
    return SETS[name].is_file()


def _share(title: str, salt: str = "") -> float:
    """Where a title falls in [0, 1), by hash: the same on every machine and run."""
    return int(hashlib.sha1((salt + title).encode()).hexdigest(), 16) % 1000 / 1000


def is_held_out(title: str) -> bool:
    """A fixed 20% of article titles."""
    return _share(title) < HELD_OUT_SHARE


def is_stacking(title: str) -> bool:
    """A fixed quarter of article titles, drawn independently of is_held_out."""
    return _share(title, "stacking:") < STACKING_SHARE


def load(name: str, max_passage_chars: int) -> tuple[Corpus, list[Question]]:
    """The set's contexts as a corpus (one article per context) and its questions."""
    path = SETS[name]
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    articles, passages, questions = [], [], []
    for d, doc in enumerate(data):
        held_out = name in SPLIT_SETS and is_held_out(doc["title"])
        stacking = not held_out and is_stacking(doc["title"])
        for p, para in enumerate(doc["paragraphs"]):
            article = Article(id=str(para.get("id") or f"{d}-{p}"), title=doc["title"], authors=(), source=path.name)
            articles.append(article)
            passages += passages_of(article, [("paragraph", para["context"], ())], max_passage_chars)  # no pages
            for qa in para["qas"]:
                answers = () if qa.get("is_impossible") else tuple(a["text"] for a in qa["answers"] if a["text"].strip())
                if answers or qa.get("is_impossible"):
                    questions.append(Question(qa["question"], article.id, answers, held_out, stacking))
    return Corpus(tuple(articles), tuple(passages), (path.name,), ()), questions


def load_seed_fit(index: Index) -> list[Question]:
    """The seed fitting questions, each with the article its evidence stands in (for taking that article out).

    They are the only questions of the app's own kind, so the second stage is fitted on them and the cross-encoder never is.
    """
    article_of = {}
    for p in index.passages:
        for sentence in p.sentences:
            article_of.setdefault(_SPACE.sub("", sentence), p.article_id)
    questions = []
    lines = [line for path in sorted(SEED_FIT_DIR.glob(SEED_FIT_GLOB)) for line in path.read_text(encoding="utf-8").splitlines()]
    for line in lines:
        if line.strip():
            row = json.loads(line)
            spans = tuple(row["evidence"])
            context = next((a for s, a in article_of.items() for span in spans if span in s), "")
            questions.append(Question(row["question"], context, spans, held_out=False, stacking=True))
    return questions


def set_folder(name: str, backend: str = DEFAULT_BACKEND) -> Path:
    """The cache folder of a set's index and question vectors (one per backend: their passage vectors differ)."""
    return cache_dir() / "bench" / (name if backend == DEFAULT_BACKEND else f"{name}-{backend}")


def cached_index(name: str, settings: Settings, model) -> Index:
    """The set's index, built once into the cache folder and rebuilt only when the code that splits it changes."""
    folder = set_folder(name, settings.backend)
    corpus, _ = load(name, settings.max_passage_chars)
    wanted = fingerprint(settings.max_passage_chars, [name.encode(), SETS[name].read_bytes()])
    try:
        index = load_index(folder)
        if (index.manifest["corpus_fingerprint"], index.manifest["model"], index.manifest["model_fingerprint"]) == (
                wanted, settings.model, model_fingerprint(settings.model, settings.backend)):
            return index
    except Exception:  # missing or damaged: build it
        pass
    encode = lambda texts: encode_passages(model, texts, batch_size=settings.batch_size, show_progress=True)
    report = build_index(corpus, folder, settings.model, model_fingerprint(settings.model, settings.backend), encode, wanted,
                         settings.max_passage_chars)
    print(f"{name}: indexed {report.passages} passages, {report.sentences} sentences in {report.seconds:.0f} s", file=sys.stderr)
    return load_index(folder)


def question_vectors(name: str, questions: list[Question], settings: Settings, model) -> np.ndarray:
    """Query embeddings of the questions, cached beside the set's index and keyed by the model's weights as it is."""
    source = model_fingerprint(settings.model, settings.backend)
    key = hashlib.sha1("\n".join([settings.model, source, *(q.text for q in questions)]).encode()).hexdigest()[:16]
    path = set_folder(name, settings.backend) / f"questions-{key}.npy"
    if path.is_file():
        return np.load(path)
    vectors = encode_queries(model, [q.text for q in questions])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)
    return vectors


def prepared(name: str, settings: Settings, model) -> tuple[Index, list[Question], np.ndarray]:
    """A set's index, questions and question vectors, each built once and cached."""
    index = cached_index(name, settings, model)
    _, questions = load(name, settings.max_passage_chars)
    return index, questions, question_vectors(name, questions, settings, model)


def contains_answer(text: str, answers: tuple[str, ...]) -> bool:
    """Whether a text holds one of the gold answer strings, whitespace aside (PDF text breaks and spaces vary)."""
    text = _SPACE.sub("", text)
    return any(_SPACE.sub("", a) in text for a in answers)


def main() -> int:
    """Index and embed every available set once (slow the first time: about 20 minutes on 2 cores)."""
    from rag.model import load_model

    settings = Settings.from_env()
    model = load_model(settings.model, settings.backend)
    for name in SETS:
        if not available(name):
            print(f"skipped {name}: {SETS[name]} is absent")
            continue
        index, questions, _ = prepared(name, settings, model)
        held, stacking = sum(q.held_out for q in questions), sum(q.stacking for q in questions)
        unanswerable = sum(not q.answers for q in questions)
        print(f"{name}: {len(index.articles)} contexts, {len(index.passages)} passages, {len(index.sentences)} sentences, "
              f"{len(questions)} questions ({held} held out, {stacking} for the second stage, {unanswerable} unanswerable)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
