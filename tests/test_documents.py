"""PDF, Word and web-page files (tests/fixtures/documents, written for these tests) read into the one corpus and answered from."""
from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pytest

from rag.clean import repair_radicals
from rag.config import Settings
from rag.corpus import load_corpus, parse_file
from rag.pipeline import Pipeline
from rag.readers import pdf as pdf_reader

FIXTURES = Path(__file__).parent / "fixtures" / "documents"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
GOOD = ["two_column.pdf", "notice.docx", "gov_page.html"]
BAD = ["damaged.pdf", "empty.docx", "encrypted.pdf"]
RADICALS = re.compile("[\u2e80-\u2fdf]")
SPACE = re.compile(r"\s+")


def _text(passages) -> str:
    return SPACE.sub("", "".join(p.text for p in passages))


def test_radical_code_points_become_the_ideographs_the_font_draws():
    pairs = EXPECTED["two_column.pdf"]["text_layer_radicals"]
    assert repair_radicals("".join(pairs)) == "".join(pairs.values())
    assert repair_radicals("⾼ 达 20% 以 上 ，") == "高 达 20% 以 上 ，"  # only radicals change


@pytest.mark.parametrize("name", GOOD)
def test_title_authors_and_date_are_found(name):
    articles, passages = parse_file(FIXTURES / name)
    expected = EXPECTED[name]
    assert len(articles) == 1
    article = articles[0]
    assert article.title == expected["title"]
    assert article.authors == tuple(expected["authors"])
    assert re.sub(r"\D", "", article.published) == re.sub(r"\D", "", expected["published"])
    assert passages and not RADICALS.search(_text(passages) + article.title)


@pytest.mark.parametrize("name", GOOD)
def test_no_page_furniture_survives(name):
    articles, passages = parse_file(FIXTURES / name)
    text = _text(passages) + "".join(p.section for p in passages) + articles[0].title + articles[0].info_source
    for clutter in EXPECTED[name].get("clutter", []):
        assert SPACE.sub("", clutter) not in text, clutter
    lines = {p.text.strip() for p in passages} | {p.section for p in passages}
    assert not lines & set(EXPECTED[name].get("clutter_lines", []))


@pytest.mark.parametrize("name", GOOD)
def test_every_answer_sentence_is_kept_whole(name):
    _, passages = parse_file(FIXTURES / name)
    for question in EXPECTED[name]["questions"]:
        sentence = SPACE.sub("", question["answer"])
        holding = [p for p in passages if sentence in SPACE.sub("", p.text)]
        assert holding, sentence
        if "page" in question:
            assert question["page"] in holding[0].pages


def test_pdf_passages_know_their_pages_even_across_a_page_break():
    _, passages = parse_file(FIXTURES / "two_column.pdf")
    assert {page for p in passages for page in p.pages} == {1, 2}
    assert all(p.pages for p in passages)
    spanning = [p for p in passages if p.pages == (1, 2)]
    assert len(spanning) == 1 and "末端网络薄弱" in spanning[0].text  # the paragraph the page break cuts


def test_a_two_column_pdf_is_read_column_by_column_without_headings_from_wrapped_lines():
    articles, passages = parse_file(FIXTURES / "two_column.pdf")
    assert articles[0].author_note.startswith("（作者系东海农业大学")  # broken over two lines in the PDF
    assert {p.section for p in passages} == {"", "一、农村冷链物流发展的现实基础", "二、当前存在的主要短板", "三、补齐短板的路径选择"}


def test_word_tables_become_text_rows():
    _, passages = parse_file(FIXTURES / "notice.docx")
    header, *rows = EXPECTED["notice.docx"]["table"]
    for row in rows:
        line = "，".join(f"{name}：{cell}" for name, cell in zip(header, row)) + "。"
        assert any(p.text == line for p in passages), line


def test_web_page_keeps_its_publication_source():
    articles, _ = parse_file(FIXTURES / "gov_page.html")
    assert articles[0].info_source == EXPECTED["gov_page.html"]["source"]


def test_bad_files_are_named_and_skipped_while_the_rest_is_read(tmp_path, caplog):
    for name in GOOD + BAD:
        shutil.copy(FIXTURES / name, tmp_path / name)
    with caplog.at_level(logging.WARNING):
        corpus = load_corpus(tmp_path)
    assert sorted(corpus.skipped) == sorted(BAD)
    assert sorted(corpus.files) == sorted(GOOD)
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    for name, reason in [("damaged.pdf", "damaged"), ("empty.docx", "empty"), ("encrypted.pdf", "encrypted")]:
        assert f"Skipping {name}: {reason}" in warnings


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, pipeline) -> Pipeline:
    """A built index over a folder mixing a seed text file with the PDF, Word and web-page fixtures and a bad file."""
    root = tmp_path_factory.mktemp("mixed")
    (root / "seeds").mkdir()
    for name in GOOD + ["damaged.pdf"]:
        shutil.copy(FIXTURES / name, root / "seeds" / name)
    shutil.copy(sorted(pipeline.settings.seeds.glob("*.txt"))[0], root / "seeds")
    mixed = Pipeline(Settings(seeds=root / "seeds", index=root / "index"), model=pipeline.model)
    report = mixed.build(progress=False)
    assert report.files == 4 and report.skipped == ("damaged.pdf",)
    return mixed


@pytest.mark.parametrize("name", GOOD)
def test_questions_about_each_file_are_answered_from_it_with_its_page(mixed, name):
    for question in EXPECTED[name]["questions"]:
        answer = mixed.ask(question["question"])
        assert not answer.abstained, question["question"]
        assert answer.citations[0].source == name
        quoted = SPACE.sub("", answer.evidence[0].text)
        assert quoted in SPACE.sub("", question["answer"]) or SPACE.sub("", question["answer"]) in quoted
        if "page" in question:
            assert answer.citations[0].pages == (question["page"],)
            assert answer.evidence[0].pages == (question["page"],)


def test_an_unchanged_pdf_added_again_embeds_nothing(mixed):
    assert mixed.build(progress=False).embedded == 0


def test_a_scanned_pdf_without_ocr_is_skipped_saying_how_to_read_it(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(pdf_reader, "ocr_available", lambda: False)
    shutil.copy(FIXTURES / "scanned.pdf", tmp_path)
    shutil.copy(FIXTURES / "notice.docx", tmp_path)
    with caplog.at_level(logging.WARNING):
        corpus = load_corpus(tmp_path)
    assert corpus.skipped == ("scanned.pdf",) and corpus.files == ("notice.docx",)
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "scanned.pdf, page 1: a scanned page" in warnings and "pip install rapidocr-onnxruntime==1.4.4" in warnings


@pytest.mark.skipif(not pdf_reader.ocr_available(), reason="OCR is optional: pip install rapidocr-onnxruntime==1.4.4")
def test_a_scanned_pdf_is_read_by_ocr():
    articles, passages = parse_file(FIXTURES / "scanned.pdf")
    assert articles[0].title == "关于做好高温天气户外作业劳动保护的通知"
    assert any("日最高气温达到40摄氏度以上时，应当停止当日户外露天作业。" in p.text and p.pages == (1,) for p in passages)
