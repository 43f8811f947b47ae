"""Answering on the real seed index: quoted, cited answers, honest abstention, input checks, the dev set figures."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from benchmarks.qa_sets import SEED_FIT_DIR, SEED_FIT_GLOB
from benchmarks.seed_dev import SETS, evaluate, load_dev_set
from rag.config import PROJECT_ROOT
from rag.model import encode_queries
from rag.retrieve import fuse, keyword_ceiling, keyword_scores, retrieve
from rag.translate import chinese_words


def test_answer_quotes_sentences_verbatim_and_cites_their_article(pipeline):
    answer = pipeline.ask("如何释放被抑制的消费需求？", top_k=5)
    assert not answer.abstained and answer.answer
    assert answer.answer == "".join(e.text for e in answer.evidence)
    texts = {p.id: p.text for p in pipeline.ensure_index().passages}
    for e in answer.evidence:
        assert e.text in texts[e.passage_id]
    assert "切实把被抑制、被冻结的消费释放出来" in answer.answer
    assert answer.evidence[0].article_title == "释放消费潜力 扩大居民消费"
    assert ("释放消费潜力 扩大居民消费", ("田学斌",), "000_d5601f0ce50051b5.txt") in [
        (c.title, c.authors, c.source) for c in answer.citations
    ]
    assert len(answer.passages) == 5
    assert [p.score for p in answer.passages] == sorted((p.score for p in answer.passages), reverse=True)


def test_answer_is_a_json_record(pipeline):
    record = json.loads(json.dumps(pipeline.ask("什么是数字孪生城市？").to_dict(), ensure_ascii=False))
    assert {"question", "answer", "abstained", "evidence", "passages", "citations", "timings_ms"} <= set(record)
    assert {"text", "score", "passage_id", "article_title", "source"} <= set(record["evidence"][0])
    assert {"id", "text", "score", "article"} <= set(record["passages"][0])
    assert {"title", "authors", "source"} <= set(record["passages"][0]["article"])
    assert {"retrieve", "answer", "total"} <= set(record["timings_ms"])
    assert "数字孪生城市是物理城市在网络空间的映射" in record["answer"]


def test_english_question_is_answered_in_the_articles_words(pipeline):
    answer = pipeline.ask("How can blockchain technology help build a fair and trustworthy business environment?")
    assert not answer.abstained
    assert "充分利用区块链技术的分布式存储、不可篡改等特性" in answer.answer


def test_unanswerable_question_abstains_but_shows_related_passages(pipeline):
    answer = pipeline.ask("周杰伦的第一张专辑叫什么？")  # the record of a decline; how often it declines: test_dev_set_figures
    assert answer.abstained and answer.answer == "" and answer.evidence == () and answer.citations == ()
    assert answer.passages  # still offered as possibly related


def test_a_keyword_match_counts_by_the_share_of_the_question_it_covers(pipeline):
    """Weighted fusion scales BM25 by the question's own ceiling, not by the best hit: a passage sharing one word with a
    question worded unlike the articles is a weak keyword match (it pushed evidence passages down)."""
    index = pipeline.ensure_index()

    def best_share(question: str) -> float:
        return max(keyword_scores(index, question, 5).values()) / keyword_ceiling(index, question)

    assert best_share("什么是产业链韧性？") > 0.8  # measured 0.85
    assert best_share("宁波人周末一般去哪里玩？") < 0.4  # 0.29: only 宁波 matches
    fused = fuse({1: 0.82, 2: 0.79}, {2: 3.0}, "weighted", 60, 0.1, ceiling=12.0)
    assert fused[1] > fused[2] == pytest.approx(0.79 + 0.1 * 3.0 / 12.0)
    assert fuse({1: 0.82, 2: 0.79}, {2: 3.0}, "weighted", 60, 0.1)[2] == pytest.approx(0.89)  # no ceiling: the best hit's


def test_an_english_question_is_searched_by_the_chinese_words_it_translates_to(pipeline):
    index = pipeline.ensure_index()
    question = "What should be the focus when evaluating development zones?"
    assert {"开发区", "考核"} <= set(chinese_words(question, index.bm25.vocab_dict))
    scores = keyword_scores(index, question, 5)
    assert "对各类开发区的考核要聚焦在主责主业上" in index.passages[max(scores, key=scores.get)].text
    question = "Qwertyuiop asdfghjkl?"  # nothing to translate: the dense ranking alone
    assert keyword_scores(index, question, 50) == {}
    vector = encode_queries(pipeline.model, [question])[0]
    dense = retrieve(index, vector, question, 5, pipeline.settings, "dense")
    for fusion in ("rrf", "weighted"):
        assert [h.row for h in retrieve(index, vector, question, 5, pipeline.settings, fusion)] == [h.row for h in dense]


def test_a_passage_ranks_by_its_best_sentence_when_that_is_closer(pipeline):
    index = pipeline.ensure_index()
    question = "数字孪生城市是什么？"
    vector = encode_queries(pipeline.model, [question])[0]
    hits = retrieve(index, vector, question, 5, pipeline.settings, "dense")
    for hit in hits:
        span = index.passage_sentences[hit.row]
        own = float(index.dense.reconstruct(hit.row) @ vector)
        best_sentence = float((index.sentence_vectors[span.start : span.stop] @ vector).max())
        assert hit.dense_score == pytest.approx(max(own, best_sentence), abs=1e-4)
    assert any(hit.dense_score > float(index.dense.reconstruct(hit.row) @ vector) + 0.01 for hit in hits)
    assert "数字孪生城市是物理城市在网络空间的映射" in index.passages[hits[0].row].text
    unchanged = retrieve(index, vector, question, 5, replace(pipeline.settings, sentence_depth=0), "dense")
    assert [h.row for h in unchanged] != [h.row for h in hits] or [h.dense_score for h in unchanged] != [h.dense_score for h in hits]


@pytest.mark.parametrize("question", ["", "   \n\t", "\x00\x07"])
def test_empty_question_is_rejected(pipeline, question):
    with pytest.raises(ValueError, match="empty"):
        pipeline.ask(question)


def test_non_string_question_is_rejected(pipeline):
    with pytest.raises(TypeError):
        pipeline.ask(["如何释放消费需求"])


def test_over_long_question_is_rejected_not_cut(pipeline):
    limit = pipeline.settings.max_question_chars
    with pytest.raises(ValueError, match=str(limit)):
        pipeline.ask("消费" * limit)


def test_control_characters_are_stripped(pipeline):
    answer = pipeline.ask("什么是\x00数字孪生\x1b城市？")
    assert answer.question == "什么是 数字孪生 城市？"
    assert pipeline.ask("什么是数字孪生城市\ud800？").question == "什么是数字孪生城市 ？"  # a lone surrogate


def test_top_k_is_checked(pipeline):
    assert len(pipeline.ask("什么是产业数字化？", top_k=2).passages) == 2
    with pytest.raises(ValueError, match="top_k"):
        pipeline.ask("什么是产业数字化？", top_k=0)


def test_dev_set_figures(pipeline):
    """The measured figures (python -m benchmarks.seed_dev), asserted with a margin: a regression guard, not a target."""
    results = {name: value for name, (value, _) in evaluate(pipeline, load_dev_set()).items()}
    # measured: answerable 0.798 (keyword 0.962, paraphrase 0.714, English 0.889); unanswerables declined 0.778
    # (near-topic 0.745); answerables wrongly declined 0.070
    assert results["accuracy answerable"] >= 0.75
    assert results["accuracy keyword"] >= 0.90
    assert results["accuracy paraphrase"] >= 0.64
    assert results["accuracy english"] >= 0.75
    assert results["unanswerables declined"] >= 0.70
    assert results["near-topic unanswerables declined"] >= 0.66
    assert results["answerables wrongly declined"] <= 0.12


def test_fitting_questions_are_apart_from_the_measuring_sets(pipeline):
    """The seed fitting questions (benchmarks.fit_reader) share no question with the seed dev, test and validation sets,
    and no evidence span with the dev and validation sets; the validation set shares no evidence sentence with the dev
    and test sets, and the English set none with any other (they were kept so). The test set was written later than the
    fitting questions, independently, over the same 534 sentences: 7 of its spans happen to be theirs too."""
    dev, test, validation, english = (load_dev_set(SETS[name]) for name in ("dev", "test", "validation", "english"))
    fitting = [q for path in sorted(SEED_FIT_DIR.glob(SEED_FIT_GLOB)) for q in load_dev_set(path)]  # the same format
    assert len(fitting) >= 100 and len(validation) >= 60
    assert len({q.id for q in fitting + validation}) == len(fitting) + len(validation)
    assert not {q.question for q in fitting} & {q.question for q in dev + test + validation + english}
    spans = {span for q in fitting for span in q.evidence}
    assert not spans & {span for q in dev + validation for span in q.evidence}
    assert len(spans & {span for q in test for span in q.evidence}) <= 7
    sentences = ["".join(s.text.split()) for s in pipeline.ensure_index().sentences]  # whitespace aside, as spans are

    def holding(questions: list) -> set[int]:
        return {i for q in questions for span in q.evidence for i, text in enumerate(sentences) if span in text}

    assert len(holding(validation)) >= 25 and not holding(validation) & holding(dev + test)
    assert len(holding(english)) >= 40 and not holding(english) & holding(fitting + dev + test + validation)


def test_ask_function_and_command_line():
    result = subprocess.run(
        [sys.executable, "-m", "rag", "ask", "什么是产业链韧性？", "--json"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert "所谓产业链韧性" in record["answer"]
    empty = subprocess.run([sys.executable, "-m", "rag", "ask", " "], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert empty.returncode == 2 and "empty" in empty.stderr and "Traceback" not in empty.stderr
