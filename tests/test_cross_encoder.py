"""The cross-encoder's second stage on the real model and seed index: its adapters file, its scores and its answers."""
from __future__ import annotations

from dataclasses import replace

import pytest

from rag.answer import load_reader
from rag.config import CrossEncoderSettings, ReaderSettings, Settings
from rag.cross_encoder import cross_scores, load_cross_encoder, merged_model, pair_logits
from rag.model import ModelError, resolve_model
from rag.pipeline import Pipeline

MAX_ADAPTER_BYTES = 2_000_000


@pytest.fixture(scope="module")
def cross(pipeline: Pipeline) -> Pipeline:
    """The seed pipeline with the cross-encoder's second stage, sharing the loaded model and index."""
    settings = replace(pipeline.settings, reader=replace(pipeline.settings.reader, mode="cross"))
    p = Pipeline(settings, model=pipeline.model)
    p._index = pipeline.ensure_index(progress=False)
    return p


def test_adapters_file_is_small_and_its_stage_fitted():
    settings = CrossEncoderSettings()
    assert settings.weights.stat().st_size < MAX_ADAPTER_BYTES
    encoder = load_cross_encoder(resolve_model(Settings().model), settings)
    assert encoder.about["trained_on"] > 10_000 and encoder.about["layers"] == settings.layers
    reader = load_reader(ReaderSettings().weights)
    assert reader.cross is not None and 0.0 < reader.cross.threshold < 1.0


def test_onnx_scorer_gives_the_trained_models_logits(cross):
    """Answering runs an ONNX export of the merged model, a pair at a time; training runs torch on padded batches."""
    import torch
    from transformers import AutoTokenizer

    model_dir = resolve_model(Settings().model)
    settings = CrossEncoderSettings()
    question, sentences = "数字孪生城市是什么？", ["数字孪生城市是数字城市的高级形态。", "宁波加快推进新型基础设施建设，到2025年建成一批示范项目。"]
    model, head = merged_model(model_dir, settings.weights)
    with torch.no_grad():
        trained = pair_logits(AutoTokenizer.from_pretrained(model_dir), model, head, [question] * 2, sentences, settings.max_tokens)
    assert abs(cross_scores(cross.cross_encoder, question, sentences) - trained.numpy()).max() < 1e-3


def test_answer_sentence_outscores_a_topical_one(cross):
    question = "宁波2019年的地区生产总值是多少？"
    answer = "2019年，宁波实现地区生产总值11985亿元，比上年增长6.8%。"
    topical = "宁波是长三角南翼经济中心，地区生产总值持续增长。"
    swapped = "宁波2022年的地区生产总值是多少？"
    scores = cross_scores(cross.cross_encoder, question, [answer, topical])
    assert scores[0] > scores[1]
    assert cross_scores(cross.cross_encoder, swapped, [answer])[0] < scores[0]


def test_cross_reader_answers_and_declines_on_the_seed_index(cross):
    answer = cross.ask("数字孪生城市是什么？")
    assert not answer.abstained and answer.evidence
    assert cross.ask("宁波2021年的GDP是多少？").abstained


def test_damaged_adapters_or_unknown_reader_is_a_clear_error(tmp_path, pipeline):
    bad = tmp_path / "cross.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="fit_cross_encoder"):
        load_cross_encoder(resolve_model(Settings().model), CrossEncoderSettings(weights=bad))
    settings = replace(pipeline.settings, reader=replace(pipeline.settings.reader, mode="neural"))
    with pytest.raises(ModelError, match="unknown reader"):
        Pipeline(settings, model=pipeline.model).ask("数字孪生城市是什么？")
