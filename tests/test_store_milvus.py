"""The Milvus store (a milvus-lite file) on the real seeds and model: the same answers as FAISS, rebuilds, damage.

One Milvus index is built per module from a copy of the seed index (every vector reused); the tests that change it
come last, in order.
"""
from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest

from benchmarks.seed_dev import load_dev_set
from rag.index import IndexUnavailable, load_index
from rag.model import encode_queries
from rag.pipeline import Pipeline
from rag.retrieve import dense_scores
from rag.store_milvus import _client, drop_passages

SAMPLE_EVERY = 6  # 28 of the 168 seed dev questions
MAX_DIFFERENT = 2  # of them, with another top passage or answer (python -m benchmarks.stores measures all 168)
CHANGED_SEED = "003_4fcd156b4d347718.txt"


@pytest.fixture(scope="module")
def milvus(tmp_path_factory, pipeline) -> Pipeline:
    """A pipeline over copies of the seeds and the seed index, served from a milvus-lite file."""
    work = tmp_path_factory.mktemp("milvus")
    shutil.copytree(pipeline.settings.seeds, work / "seeds")
    shutil.copytree(pipeline.settings.index, work / "index")
    settings = replace(pipeline.settings, seeds=work / "seeds", index=work / "index", store=str(work / "passages.db"))
    p = Pipeline(settings, model=pipeline.model)
    p.ensure_index(progress=False)  # stale for this store: rebuilt into Milvus, reusing every vector
    return p


def _collections(p: Pipeline) -> set[str]:
    return set(_client(p.ensure_index().store.uri).list_collections())


def test_the_build_is_in_its_collection(milvus):
    index = milvus.ensure_index()
    assert index.store.collection == index.manifest["milvus"]["collection"]
    assert index.store.collection.startswith("passages_") and _collections(milvus) == {index.store.collection}


def test_the_milvus_store_answers_as_faiss(pipeline, milvus):
    faiss_index, milvus_index = pipeline.ensure_index(), milvus.ensure_index()
    depth = milvus.settings.depth
    differ = []
    for q in load_dev_set()[::SAMPLE_EVERY]:
        vector = encode_queries(pipeline.model, [q.question])[0]
        exact, served = dense_scores(faiss_index, vector, depth), dense_scores(milvus_index, vector, depth)
        assert exact.keys() == served.keys() and np.allclose([exact[r] for r in exact], [served[r] for r in exact], atol=1e-5)
        a, b = pipeline.ask(q.question), milvus.ask(q.question)
        if (a.passages[0].id, a.answer, a.abstained) != (b.passages[0].id, b.answer, b.abstained):
            differ.append(q.question)
    # The dense side is the same; Milvus's own jieba analyzer ranks the keyword side a little differently.
    assert len(differ) <= MAX_DIFFERENT, differ


def test_a_rebuild_after_one_file_changed_uses_a_new_collection(milvus):
    first = milvus.ensure_index().store.collection
    seed = milvus.settings.seeds / CHANGED_SEED
    seed.write_text(seed.read_text(encoding="utf-8") + "\n\n量子通信网络建设应当纳入城市韧性规划。\n", encoding="utf-8")
    report = milvus.build(progress=False)
    assert 0 < report.embedded <= 6  # the new passage and its sentence; every other vector is reused
    second = milvus.ensure_index().store.collection
    assert second != first and _collections(milvus) == {first, second}  # the replaced build stays until the next switch
    assert "量子通信网络建设应当纳入城市韧性规划。" in milvus.ask("量子通信网络应该纳入什么规划？").answer
    assert milvus.build(progress=False).embedded == 0
    assert _collections(milvus) == {second, milvus.ensure_index().store.collection}  # the first build's is dropped


def test_a_short_or_missing_collection_is_corrupt(milvus):
    store = milvus.ensure_index().store
    _client(store.uri).delete(store.collection, ids=[0])
    with pytest.raises(IndexUnavailable) as problem:
        load_index(milvus.settings.index)
    assert problem.value.reason == "corrupt" and "holds" in str(problem.value)
    drop_passages(store.uri, store.collection)
    with pytest.raises(IndexUnavailable) as problem:
        load_index(milvus.settings.index)
    assert problem.value.reason == "corrupt" and "missing" in str(problem.value)  # Pipeline rebuilds it, as damaged files
