"""The persisted index on the real seeds and model: contents, incremental rebuilds, atomicity, damage and staleness."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rag.config import PROJECT_ROOT, Settings
from rag.corpus import load_corpus
from rag.index import BM25_DIR, CURRENT, MANIFEST, PASSAGE_INDEX, SENTENCE_VECTORS, IndexUnavailable, check_fresh, load_index
from rag.keywords import corpus_tokens
from rag.records import ARTICLES, PASSAGES, Passages
from rag.model import encode_queries
from rag.pipeline import Pipeline

SMALLEST_SEED = "003_4fcd156b4d347718.txt"  # a sixth of the corpus: a full re-embedding of it takes seconds


def test_index_holds_the_whole_corpus(pipeline):
    index = pipeline.ensure_index()
    corpus = load_corpus(pipeline.settings.seeds, pipeline.settings.max_passage_chars)
    counts = index.manifest["counts"]
    assert counts == {"files": 5, "articles": len(corpus.articles), "passages": len(corpus.passages),
                      "sentences": sum(len(p.sentences) for p in corpus.passages)}
    assert index.manifest["model"] == pipeline.settings.model
    assert index.dense.ntotal == len(index.passages) and index.dense.d == 384
    assert [p.id for p in index.passages] == [p.id for p in corpus.passages]
    norms = np.linalg.norm(index.sentence_vectors, axis=1)
    assert np.allclose(norms, 1.0, atol=1e-3)


def test_a_passage_is_found_by_its_own_words(pipeline):
    index = pipeline.ensure_index()
    passage = next(p for p in index.passages if "数字孪生城市是物理城市" in p.text)
    query = encode_queries(pipeline.model, ["数字孪生城市是物理城市在网络空间的映射"])[0]
    _, rows = index.dense.search(query.reshape(1, -1), 3)
    assert passage.id in [index.passages[r].id for r in rows[0]]


def test_worker_processes_tokenise_a_corpus_as_one_process_does(pipeline):
    index = pipeline.ensure_index()
    texts = [p.text for p in index.passages]
    alone = corpus_tokens(texts, processes=1)
    assert corpus_tokens(texts, processes=2, parallel_min=1) == alone
    assert "数字" in alone[[i for i, t in enumerate(texts) if "数字孪生城市是物理城市" in t][0]]


def test_rebuild_without_change_embeds_nothing(scratch):
    scratch.build(progress=False)
    report = scratch.build(progress=False)  # twice within a second: each build still gets its own folder
    assert report.embedded == 0
    assert report.reused == report.passages + report.sentences


def test_rebuild_after_one_file_changed_embeds_only_the_change(scratch):
    seed = scratch.settings.seeds / "003_4fcd156b4d347718.txt"
    seed.write_text(seed.read_text(encoding="utf-8") + "\n\n量子通信网络建设应当纳入城市韧性规划。\n", encoding="utf-8")
    report = scratch.build(progress=False)
    assert 0 < report.embedded <= 6  # the new passage and its sentence; every other vector is reused
    answer = scratch.ask("量子通信网络应该纳入什么规划？")
    assert "量子通信网络建设应当纳入城市韧性规划。" in answer.answer


def test_a_crash_mid_build_leaves_the_previous_index(scratch, monkeypatch):
    before = (scratch.settings.index / CURRENT).read_text()
    (scratch.settings.seeds / "new.txt").write_text("新的文章\n\n这是一段全新的文字，需要重新计算向量。\n", encoding="utf-8")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("rag.pipeline.encode_passages", crash)
    with pytest.raises(KeyboardInterrupt):
        scratch.build(progress=False)
    assert (scratch.settings.index / CURRENT).read_text() == before
    assert not [p for p in scratch.settings.index.iterdir() if p.name.startswith(".build-")]
    assert load_index(scratch.settings.index).manifest["counts"]["files"] == 5


def test_a_damaged_index_is_reported(scratch):
    build = scratch.settings.index / (scratch.settings.index / CURRENT).read_text()
    (build / ARTICLES).write_text('[{"id": ', encoding="utf-8")
    with pytest.raises(IndexUnavailable) as problem:
        load_index(scratch.settings.index)
    assert problem.value.reason == "corrupt" and "rebuild" in str(problem.value)


def test_a_missing_index_is_reported(tmp_path):
    with pytest.raises(IndexUnavailable) as problem:
        load_index(tmp_path / "nowhere")
    assert problem.value.reason == "missing" and "rag.build" in str(problem.value)


def test_a_stale_index_is_reported_and_rebuilt(scratch, capsys):
    seed = scratch.settings.seeds / "002_a147e2a058174e8e.txt"
    seed.write_text(seed.read_text(encoding="utf-8").replace("宁波", "甬城"), encoding="utf-8")
    with pytest.raises(IndexUnavailable) as problem:
        scratch.load_index()
    assert problem.value.reason == "stale"
    index = scratch.ensure_index(progress=False)  # rebuilds, with a message
    assert "changed" in capsys.readouterr().err
    assert any("甬城" in p.text for p in index.passages)


def test_an_index_of_another_model_is_stale(pipeline):
    manifest = json.loads((pipeline.settings.index / (pipeline.settings.index / CURRENT).read_text() / MANIFEST).read_text())
    with pytest.raises(IndexUnavailable, match="model"):
        check_fresh(manifest, None, pipeline.settings.max_passage_chars, "some/other-model", None)


def test_an_index_split_with_another_passage_bound_is_stale(pipeline):
    manifest = pipeline.ensure_index().manifest
    settings = pipeline.settings
    check_fresh(manifest, settings.seeds, settings.max_passage_chars, settings.model, None)  # fresh as built
    with pytest.raises(IndexUnavailable, match="passage settings"):
        check_fresh(manifest, settings.seeds, settings.max_passage_chars // 2, settings.model, None)


def test_build_command_fails_with_one_line_reason(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rag.build", "--seeds", str(tmp_path / "absent"), "--index", str(tmp_path / "index")],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("rag.build: failed:") and "absent" in lines[-1]
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- faults: concurrent builds, damage of every kind


def _active(scratch) -> Path:
    index_dir = scratch.settings.index
    return index_dir / (index_dir / CURRENT).read_text()


def test_two_builds_at_once_leave_a_working_index(scratch):
    seed = scratch.settings.seeds / "003_4fcd156b4d347718.txt"
    seed.write_text(seed.read_text(encoding="utf-8") + "\n\n量子通信网络建设应当纳入城市韧性规划。\n", encoding="utf-8")
    errors = []

    def build():
        try:
            scratch.build(progress=False)
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    index = load_index(scratch.settings.index)
    assert any("量子通信网络" in p.text for p in index.passages)
    builds = [p for p in scratch.settings.index.iterdir() if p.name.startswith(("build-", ".build-", f".{CURRENT}."))]
    assert len(builds) <= 2  # the active build and the one it replaced, no leftovers


@pytest.mark.parametrize("damage", ["garble faiss", "empty npy", "garble bm25", "edit records", "binary pointer", "pointer outside"])
def test_every_kind_of_damage_is_detected(scratch, damage):
    build = _active(scratch)
    if damage == "garble faiss":
        data = bytearray((build / PASSAGE_INDEX).read_bytes())
        data[-4000:-3000] = bytes(1000)
        (build / PASSAGE_INDEX).write_bytes(bytes(data))
    elif damage == "empty npy":
        (build / SENTENCE_VECTORS).write_bytes(b"")
    elif damage == "garble bm25":
        target = max((p for p in (build / BM25_DIR).iterdir() if p.suffix == ".npy"), key=lambda p: p.stat().st_size)
        data = bytearray(target.read_bytes())
        data[-100:] = b"\xff" * 100
        target.write_bytes(bytes(data))
    elif damage == "edit records":
        lines = (build / PASSAGES).read_text(encoding="utf-8").splitlines(keepends=True)
        record = json.loads(lines[0])
        lines[0] = json.dumps({**record, "text": record["text"][::-1]}, ensure_ascii=False) + "\n"  # same length
        (build / PASSAGES).write_text("".join(lines), encoding="utf-8")
    elif damage == "binary pointer":
        (scratch.settings.index / CURRENT).write_bytes(b"\xff\xfe\x00garbage")
    else:
        (scratch.settings.index / CURRENT).write_text("../../etc", encoding="utf-8")
    with pytest.raises(IndexUnavailable) as problem:
        load_index(scratch.settings.index)
    assert problem.value.reason == "corrupt" and "rebuild" in str(problem.value)


@pytest.fixture()
def one_file(tmp_path: Path, pipeline) -> Pipeline:
    """A pipeline over a copy of the smallest seed file, its index built: for cases that re-embed everything."""
    (tmp_path / "seeds").mkdir()
    shutil.copy(pipeline.settings.seeds / SMALLEST_SEED, tmp_path / "seeds")
    p = Pipeline(Settings(seeds=tmp_path / "seeds", index=tmp_path / "index"), model=pipeline.model)
    p.ensure_index(progress=False)
    return p


def test_a_damaged_index_is_rebuilt_without_reusing_its_vectors(one_file):
    build = _active(one_file)
    vectors = np.load(build / SENTENCE_VECTORS)
    vectors[:10] = vectors[10:20]  # still unit length, wrong: only the checksum can tell
    np.save(build / SENTENCE_VECTORS, vectors)
    fresh = Pipeline(one_file.settings, model=one_file.model)
    index = fresh.ensure_index(progress=False)  # damaged: rebuilt, never served
    assert _active(fresh) != build
    assert not np.allclose(index.sentence_vectors[:10], index.sentence_vectors[10:20])


def test_a_directory_in_place_of_the_pointer_is_replaced_by_a_build(one_file):
    (one_file.settings.index / CURRENT).unlink()
    (one_file.settings.index / CURRENT).mkdir()
    one_file.build(progress=False)
    assert load_index(one_file.settings.index).manifest["counts"]["files"] == 1


def test_an_unreadable_seed_file_is_skipped_and_the_rest_indexed(scratch, monkeypatch, caplog):
    locked = scratch.settings.seeds / "009_locked.txt"
    locked.write_text("锁住的文章\n\n这篇文章的内容读不到。\n", encoding="utf-8")
    read_bytes = Path.read_bytes

    def permission_denied(path: Path) -> bytes:  # what `chmod 000` does to a service account (root reads anything)
        if path.name == locked.name:
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", permission_denied)
    scratch.build(progress=False)
    assert load_index(scratch.settings.index).manifest["counts"]["files"] == 5
    assert "009_locked.txt" in caplog.text and "Permission denied" in caplog.text
    scratch.load_index()  # the staleness check reads every seed file too, and copes


def test_a_stale_index_that_cannot_be_rebuilt_is_served_with_a_notice(scratch, monkeypatch):
    seed = scratch.settings.seeds / "002_a147e2a058174e8e.txt"
    seed.write_text(seed.read_text(encoding="utf-8") + "\n\n新增的一段文字。\n", encoding="utf-8")

    def read_only(*args, **kwargs):  # what a read-only index folder does to a build
        raise PermissionError(13, "Permission denied", str(scratch.settings.index))

    monkeypatch.setattr("rag.pipeline.build_index", read_only)
    answer = scratch.ask("什么是数字孪生城市？")
    assert not answer.abstained and "数字孪生城市是物理城市在网络空间的映射" in answer.answer
    assert "changed" in answer.notice and "Permission denied" in answer.notice
    assert answer.to_dict()["notice"] == answer.notice


def test_a_running_pipeline_rebuilds_in_the_background_when_seeds_change(scratch):
    pipeline = Pipeline(replace(scratch.settings, seed_check_seconds=0.01), model=scratch.model)
    assert "量子通信" not in pipeline.ask("量子通信网络应该纳入什么规划？").answer
    seed = scratch.settings.seeds / "003_4fcd156b4d347718.txt"
    seed.write_text(seed.read_text(encoding="utf-8") + "\n\n量子通信网络建设应当纳入城市韧性规划。\n", encoding="utf-8")
    time.sleep(0.02)
    before = pipeline.ask("量子通信网络应该纳入什么规划？")  # answered at once, from the index as it was
    assert pipeline.rebuilding is not None and "量子通信网络建设" not in before.answer
    pipeline.rebuilding.join(timeout=120)
    assert "量子通信网络建设应当纳入城市韧性规划。" in pipeline.ask("量子通信网络应该纳入什么规划？").answer


def test_hashes_are_checked_once_per_version_of_a_file(scratch, monkeypatch):
    load_index(scratch.settings.index)  # hashes every file of the copy and records that it did
    monkeypatch.setattr("rag.integrity.sha256", lambda path: pytest.fail(f"{path} hashed again"))
    load_index(scratch.settings.index)  # sizes and stats only
    monkeypatch.undo()
    build = _active(scratch)
    data = bytearray((build / PASSAGE_INDEX).read_bytes())
    data[-4000:-3000] = bytes(1000)  # same size, written later: its change time gives it away
    (build / PASSAGE_INDEX).write_bytes(bytes(data))
    with pytest.raises(IndexUnavailable, match="passages.faiss"):
        load_index(scratch.settings.index)


def test_index_views_made_once_match_the_records(pipeline):
    """Each article's passage rows and the float32 copy of the sentence vectors agree with what is on disk."""
    index = pipeline.ensure_index(progress=False)
    rows = index.article_passages
    assert set(rows) <= set(index.articles) and len(rows) > 1
    assert sorted(r for article_rows in rows.values() for r in article_rows) == list(range(len(index.passages)))
    assert all(index.passages[r].article_id == article for article, article_rows in rows.items() for r in article_rows)
    assert index.article_passages is rows and index.sentence_matrix is index.sentence_matrix
    assert index.sentence_matrix.dtype == np.float32
    assert np.array_equal(index.sentence_matrix, np.asarray(index.sentence_vectors, dtype=np.float32))


def test_passages_are_parsed_once_and_the_last_ones_parsed_are_kept(pipeline, monkeypatch):
    """A question reads its top passages several times (features, quotes, citations): each is parsed once, and only
    the last PARSED_PASSAGES parsed are kept."""
    monkeypatch.setattr("rag.records.PARSED_PASSAGES", 3)
    index = pipeline.ensure_index(progress=False)
    passages = Passages(index.passages.lines, index.passages.offsets)  # its own, empty cache
    first = passages[0]
    assert passages[0] is first and first == index.passages[0]
    for row in (1, 2, 3):
        passages[row]
    assert list(passages.parsed) == [1, 2, 3] and passages[0] is not first and passages[0] == first
