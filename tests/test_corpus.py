"""Corpus building on the real seed files and on small files written by the tests."""
from __future__ import annotations

import logging
import random
import re
from pathlib import Path

import pytest

from rag.clean import squeeze_cjk_spaces
from rag.readers.text import read_text
from rag.config import Settings
from rag.corpus import Corpus, load_corpus, split_sentences

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
MAX_CHARS = Settings().max_passage_chars
HAN_SPACE_HAN = re.compile(r"[\u4e00-\u9fff]\s+[\u4e00-\u9fff]")
# ("打印" alone is body text in 002: "3D打印"; the toolbar is "返回】 【打印")
CLUTTER = ("字体", "保护视力色", "返回】", "【打印", "官方微信", ".jpg", "责任编辑", "国脉", "□", "■")
COLUMN_LABELS = ("思想观澜", "SI XIANG GUAN LAN", "热点透视", "理论视界", "决策建议")

# file stem -> [(title or None when derived, authors)]
EXPECTED = {
    "000_d5601f0ce50051b5": [
        ("释放消费潜力 扩大居民消费", ("田学斌",)),
        ("让城市更聪明更智慧", ("陈显中",)),
        ("增强产业链韧性 提高抗风险能力", ("阎东彬", "丁宇峰")),
    ],
    "001_b909c047ffde5c0c": [
        ("在大战大考中践行初心使命", ("贾玉娥",)),
        ("加强重点平台建设 提升承接能力水平", ("武义青", "张云")),
        ("以新一代信息技术改造提升传统产业", ("祁文辉",)),
    ],
    "002_a147e2a058174e8e": [("后疫情时代加快转型发展的若干思考", ("吴红艳",))],
    "003_4fcd156b4d347718": [(None, ("刘一丝",))],
    "004_57414710c54d5ef4": [
        ("服务企业复工复产要合", ("樊自甫", "万晓榆")),
        (None, ("廖",)),
        ("以新金融理念推进智慧政务建设", ("高永强",)),
        ('在战"疫"中 读懂国家治理优势', ("全定成",)),
        ("多措并举巩固提升脱贫攻坚成果", ("肖端",)),
    ],
}


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return load_corpus(SEEDS, MAX_CHARS)


def _articles(corpus: Corpus, stem: str):
    return [a for a in corpus.articles if a.id.startswith(stem + "#")]


def _passages(corpus: Corpus, article_id: str):
    return [p for p in corpus.passages if p.article_id == article_id]


# ---------------------------------------------------------------- the seed files


def test_all_seed_files_are_read(corpus: Corpus) -> None:
    assert corpus.files == tuple(sorted(f"{stem}.txt" for stem in EXPECTED))
    assert corpus.skipped == ()


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_articles_titles_and_authors(corpus: Corpus, stem: str) -> None:
    articles = _articles(corpus, stem)
    assert [a.authors for a in articles] == [authors for _, authors in EXPECTED[stem]]
    for n, (article, (title, _)) in enumerate(zip(articles, EXPECTED[stem]), start=1):
        assert article.id == f"{stem}#{n}"
        assert article.source == f"{stem}.txt"
        assert article.title.strip()
        if title is not None:
            assert article.title == title
        assert _passages(corpus, article.id), f"{article.id} has no passages"


def test_derived_titles_come_from_the_text(corpus: Corpus) -> None:
    for article in corpus.articles:
        if article.id in ("003_4fcd156b4d347718#1", "004_57414710c54d5ef4#2"):
            body = "".join(p.text for p in _passages(corpus, article.id)) + "".join(
                p.section for p in _passages(corpus, article.id)
            )
            assert article.title.rstrip("…") in body


def test_publication_info_and_author_notes(corpus: Corpus) -> None:
    by_id = {a.id: a for a in corpus.articles}
    web = by_id["002_a147e2a058174e8e#1"]
    assert (web.info_source, web.published) == ("市发展研究中心", "2022-06-29 16:14")
    assert by_id["003_4fcd156b4d347718#1"].author_note.startswith("【作者:刘一丝 单位:")
    assert by_id["004_57414710c54d5ef4#1"].author_note.startswith("(作者均系重庆市中国特色社会主义理论体系")
    # the note glued to a body line is split off it
    assert by_id["004_57414710c54d5ef4#4"].author_note == "(作者系市委党校在职研究生)"
    assert not any(re.search(r"[(（【]作者", p.text) for p in corpus.passages)


def test_no_space_between_chinese_characters(corpus: Corpus) -> None:
    offenders = [p.id for p in corpus.passages if HAN_SPACE_HAN.search(p.text)]
    assert offenders == []
    assert any("给经济发展带来不利影响" in p.text for p in corpus.passages)


def test_no_clutter_or_column_labels_survive(corpus: Corpus) -> None:
    texts = [p.text for p in corpus.passages] + [p.section for p in corpus.passages]
    texts += [a.title for a in corpus.articles]
    for token in CLUTTER + COLUMN_LABELS:
        assert not [t for t in texts if token in t], token


def test_lines_broken_mid_sentence_are_joined(corpus: Corpus) -> None:
    texts = [p.text for p in corpus.passages]
    assert any("企业是产业链环环相扣的关键节点，是产业链构成的基本单元。" in t for t in texts)
    assert any("目前，我省在承接京津产业转移和科技成果转化方面" in t for t in texts)
    assert any("深耕数据治理,助力数字政府的转型。" in t for t in texts)
    sections = {p.section for p in corpus.passages}
    assert "不断提升企业韧性" in sections
    assert "补齐配套服务短板，实现创新发展、绿色发展" in sections
    assert "(一)加快智慧城市建设步伐" in sections
    assert not any(s.startswith("企业是产业链") for s in sections)


def test_displaced_body_goes_to_its_article(corpus: Corpus) -> None:
    smart_city = _passages(corpus, "000_d5601f0ce50051b5#2")
    assert smart_city[0].text.startswith("让城市更聪明一些、更智慧一些")
    assert "打造数字孪生城市" in {p.section for p in smart_city}
    consumption = _passages(corpus, "000_d5601f0ce50051b5#1")
    assert not any("智慧城市" in p.text for p in consumption)
    assert consumption[-1].text.endswith("更好满足人民美好生活需要。")


def test_passages_are_consistent(corpus: Corpus) -> None:
    for passage in corpus.passages:
        assert 0 < len(passage.text) <= MAX_CHARS, passage.id
        assert passage.sentences and all(s and s in passage.text for s in passage.sentences), passage.id
        assert passage.id.startswith(passage.article_id + ":")
        assert passage.source == passage.article_id.split("#")[0] + ".txt"
    for article in corpus.articles:
        numbers = sorted({p.paragraph for p in _passages(corpus, article.id)})
        assert numbers == list(range(1, len(numbers) + 1))
    long_paragraphs = [p for p in corpus.passages if not p.id.endswith(".1")]
    assert long_paragraphs, "some seed paragraph is longer than the bound and must be split"


def test_sentences_cover_passage_text_in_order(corpus: Corpus) -> None:
    for passage in corpus.passages:
        pos = 0
        for sentence in passage.sentences:
            found = passage.text.index(sentence, pos)
            assert passage.text[pos:found].strip() == ""
            pos = found + len(sentence)
        assert passage.text[pos:].strip() == ""


def test_ids_are_unique_and_stable(corpus: Corpus) -> None:
    ids = [p.id for p in corpus.passages]
    assert len(ids) == len(set(ids))
    assert len({a.id for a in corpus.articles}) == len(corpus.articles)
    again = load_corpus(SEEDS, MAX_CHARS)
    assert [p.id for p in again.passages] == ids
    assert again == corpus


def test_small_bound_splits_at_sentence_or_comma_boundaries() -> None:
    small = load_corpus(SEEDS, max_passage_chars=60)
    assert all(len(p.text) <= 60 for p in small.passages)
    assert all(s in p.text for p in small.passages for s in p.sentences)
    enders = "。！？；!?;.…，,、：:”’）)\""
    cut = [p.id for p in small.passages if p.text[-1] not in enders]
    # only paragraphs the source itself leaves unterminated ("…为支撑的重点承")
    assert len(cut) <= 3


def test_over_long_sentence_is_cut_at_commas(tmp_path: Path) -> None:
    sentence = "，".join(["推进数字政府建设"] * 8) + "。"  # 71 characters, one sentence
    (tmp_path / "a.txt").write_text(f"标题\n\n{sentence}\n", encoding="utf-8")
    passages = load_corpus(tmp_path, max_passage_chars=30).passages
    assert "".join(p.text for p in passages) == sentence
    assert all(len(p.text) <= 30 and p.text[-1] in "，。" for p in passages)
    assert [p.id for p in passages] == ["a#1:1.1", "a#1:1.2", "a#1:1.3"]


# ---------------------------------------------------------------- small files


def test_plain_files_whitespace_and_encodings(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(
        "# 数字政府建设\n\n## 一、总体要求\n\n推进数字 政府建设。Hello world, it stays.\n", encoding="utf-8"
    )
    (tmp_path / "b.txt").write_bytes("经济发展报告\n\n当前，数字经济规模持续扩大，\n占比不断提升。\n".encode("gbk"))
    (tmp_path / "c.txt").write_bytes("\ufeff只有一段正文。".encode("utf-8"))
    (tmp_path / "ignored.csv").write_text("x", encoding="utf-8")
    corpus = load_corpus(tmp_path)
    assert corpus.files == ("a.md", "b.txt", "c.txt")
    assert [a.title for a in corpus.articles] == ["数字政府建设", "经济发展报告", "只有一段正文"]
    assert [(p.section, p.text) for p in corpus.passages] == [
        ("一、总体要求", "推进数字政府建设。Hello world, it stays."),
        ("", "当前，数字经济规模持续扩大，占比不断提升。"),
        ("", "只有一段正文。"),
    ]


def test_undecodable_file_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "good.txt").write_text("标题\n\n正文。", encoding="utf-8")
    rng = random.Random(7)
    noise = bytes(rng.randrange(256) for _ in range(4000))
    (tmp_path / "noise.txt").write_bytes(noise)
    with pytest.raises(UnicodeDecodeError, match="noise.txt"):
        read_text(tmp_path / "noise.txt")
    with caplog.at_level(logging.WARNING):
        corpus = load_corpus(tmp_path)
    assert corpus.skipped == ("noise.txt",)
    assert corpus.files == ("good.txt",)
    assert [p.text for p in corpus.passages] == ["正文。"]
    assert any("noise.txt" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_missing_or_empty_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        load_corpus(tmp_path / "nope")
    (tmp_path / "notes.csv").write_text("x", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="No supported documents"):
        load_corpus(tmp_path)


# ---------------------------------------------------------------- functions


def test_squeeze_cjk_spaces() -> None:
    assert squeeze_cjk_spaces("经 济发展 ， 带来") == "经济发展，带来"
    assert squeeze_cjk_spaces("精准施策, 严防严控") == "精准施策,严防严控"
    assert squeeze_cjk_spaces("推动\"线上办公\"替代 \"传统办公\"") == "推动\"线上办公\"替代\"传统办公\""
    assert squeeze_cjk_spaces("Hello  world") == "Hello world"
    assert squeeze_cjk_spaces("加速推进5G 网络和 STM 终端") == "加速推进5G 网络和 STM 终端"
    assert squeeze_cjk_spaces("释放消费潜力 扩大居民消费", keep_title_separators=True) == "释放消费潜力 扩大居民消费"


def test_split_sentences_keeps_closers_attached() -> None:
    assert split_sentences("他说：“好。”然后走了！真的？是；否…… 结束") == [
        "他说：“好。”", "然后走了！", "真的？", "是；", "否……", "结束",
    ]
    assert split_sentences('稳妥有序.切实做到"两手抓"。（完）') == ["稳妥有序.", '切实做到"两手抓"。', "（完）"]
    assert split_sentences("Version 5.1 is out. Next one") == ["Version 5.1 is out.", "Next one"]
    assert split_sentences("") == []


def test_control_characters_in_a_document_never_reach_a_passage(tmp_path: Path) -> None:
    (tmp_path / "nul.txt").write_text("标题\n\n口袋公园\x00是面积较小的\x07开放绿地。\x1b它方便居民步行到达。\n", encoding="utf-8")
    corpus = load_corpus(tmp_path)
    text = "".join(p.text for p in corpus.passages)
    assert "口袋公园是面积较小的开放绿地。" in text
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text)
