"""Repairing extracted text: radical code points, whitespace, web-page clutter."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import replace
from typing import Iterable

from rag.document import Block

# PDF fonts often map Chinese characters to radical code points. NFKC maps the Kangxi Radicals block
# (U+2F00–U+2FD5); the CJK Radicals Supplement (U+2E81–U+2EF3) needs Unicode's EquivalentUnifiedIdeograph table.
RADICAL_IDEOGRAPHS = dict(pair for pair in (
    "⺁厂 ⺂乛 ⺃乚 ⺄乙 ⺅亻 ⺆冂 ⺇𠘨 ⺈刀 ⺉刂 ⺊卜 ⺋㔾 ⺌小 ⺍小 ⺎兀 ⺏尣 ⺐尢 ⺑𡯂 ⺒巳 ⺓幺 ⺔彑 ⺕𫜹 ⺖忄 ⺗心 ⺘扌 ⺙攵 ⺛旡 "
    "⺜日 ⺝月 ⺞歺 ⺟母 ⺠民 ⺡氵 ⺢氺 ⺣灬 ⺤爫 ⺥爫 ⺦丬 ⺧牛 ⺨犭 ⺩王 ⺪𤴔 ⺫目 ⺬示 ⺭礻 ⺮𥫗 ⺯糹 ⺰纟 ⺱罓 ⺲罒 ⺳㓁 ⺴冗 "
    "⺵𦉫 ⺶羊 ⺷𦍌 ⺸𦍋 ⺹耂 ⺺肀 ⺻聿 ⺼肉 ⺽𦥑 ⺾艹 ⺿艹 ⻀艹 ⻁虎 ⻂衤 ⻃覀 ⻄西 ⻅见 ⻆角 ⻇𧢲 ⻈讠 ⻉贝 ⻊𧾷 ⻋车 ⻌辶 "
    "⻍辶 ⻎辶 ⻏邑 ⻐钅 ⻑長 ⻒镸 ⻓长 ⻔门 ⻕𨸏 ⻖阝 ⻗雨 ⻘青 ⻙韦 ⻚页 ⻛风 ⻜飞 ⻝食 ⻞𩙿 ⻟飠 ⻠饣 ⻡𩠐 ⻢马 ⻣骨 ⻤鬼 "
    "⻥鱼 ⻦鸟 ⻧卤 ⻨麦 ⻩黄 ⻪黾 ⻫斉 ⻬齐 ⻭歯 ⻮齿 ⻯竜 ⻰龙 ⻱龜 ⻲亀 ⻳龟"
).split())
# Two Kangxi radicals whose NFKC forms (戶, 靑) are variants: Chinese fonts draw them as 户 and 青.
RADICAL_IDEOGRAPHS.update({"\u2f3e": "户", "\u2fad": "青"})
RADICAL = re.compile("[\u2e80-\u2fd5]")

HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# Chinese punctuation, full-width forms and the curly quotes / dashes / ellipsis used in Chinese text.
CJK_PUNCT = "\u3000-\u303f\uff00-\uffef\u2014\u2015\u2018\u2019\u201c\u201d\u2026\u00b7\u25a0\u25a1"
CJK_CHAR = re.compile(f"[{HAN}{CJK_PUNCT}]")
HAN_CHAR = re.compile(f"[{HAN}]")
# ASCII punctuation that PDF text uses in place of Chinese punctuation ("施策, 严防").
ASCII_PUNCT = ",.;:!?\"'()"
# Zero-width characters, and control characters (NUL and the like) that PDF and web extraction leave behind.
INVISIBLE_CHARS = re.compile("[\u200b\u200c\u200d\u2060\ufeff\x00-\x08\x0b\x0e-\x1f\x7f]")
WHITESPACE_RUN = re.compile(r"\s+")
# In titles a space between two runs this long is a deliberate separator ("释放消费潜力 扩大居民消费").
MIN_TITLE_SEGMENT_CHARS = 3

# Web-page toolbars, share prompts, image names and editor credits (checked on whole lines).
CLUTTER_PATTERNS = (
    re.compile(r"^【?\s*字体\s*[:：]"),
    re.compile(r"保护视力色"),
    re.compile(r"^(?=.*[【】\[\]])[\s【】\[\]|｜]*(?:(?:返回顶部|返回|打印本页|打印|关闭窗口|关闭|收藏|分享)[\s【】\[\]|｜]*)+$"),
    re.compile(r"^.{0,20}(?:请关注|扫码关注|扫一扫|长按识别).{0,20}(?:微信|公众号|微博|二维码)"),
    re.compile(r"^[\w\-.]{1,80}\.(?:jpe?g|png|gif|bmp|webp|svg)$", re.IGNORECASE),
    re.compile(r"^[（(【\[]?\s*(?:责任编辑|责编|编辑|校对|审核|审校|来源编辑)\s*[:：]"),
)
MAX_CLUTTER_LINE_CHARS = 120
# A site's "about us" block ("关于国脉" + blurb) that follows the clutter after an article.
ABOUT_HEADING = re.compile(f"^关于[{HAN}A-Za-z]{{1,6}}$")
# Magazine pull-quotes ("■…") repeat sentences from the body; answers should quote the body.
PULL_QUOTE = re.compile(r"^[■◆●]")


def repair_radicals(text: str) -> str:
    """Radical code points (⼀ ⼈ ⻓ ⾼) → the ideographs they stand for (一 人 长 高)."""
    return RADICAL.sub(lambda m: RADICAL_IDEOGRAPHS.get(m.group(), unicodedata.normalize("NFKC", m.group())), text)


def collapse_whitespace(line: str) -> str:
    """Turn any run of (Unicode) whitespace into one space, drop invisible characters, strip the ends."""
    return WHITESPACE_RUN.sub(" ", INVISIBLE_CHARS.sub("", line)).strip()


def _is_cjk(ch: str) -> bool:
    return bool(CJK_CHAR.match(ch))


def _cjk_before(text: str, pos: int) -> bool:
    """Is the text ending at pos Chinese (a CJK char, or ASCII punctuation right after one)?"""
    if pos <= 0:
        return False
    ch = text[pos - 1]
    return _is_cjk(ch) or (ch in ASCII_PUNCT and pos >= 2 and _is_cjk(text[pos - 2]))


def _cjk_after(text: str, pos: int) -> bool:
    """Is the text starting at pos Chinese (a CJK char, or ASCII punctuation right before one)?"""
    if pos >= len(text):
        return False
    ch = text[pos]
    return _is_cjk(ch) or (ch in ASCII_PUNCT and pos + 1 < len(text) and _is_cjk(text[pos + 1]))


def squeeze_cjk_spaces(text: str, keep_title_separators: bool = False) -> str:
    """Remove spaces that PDF extraction put between Chinese characters/punctuation; keep Latin spacing."""
    text = collapse_whitespace(text)

    def replace(match: re.Match[str]) -> str:
        start, end = match.start(), match.end()
        if not (_cjk_before(text, start) and _cjk_after(text, end)):
            return " "
        if keep_title_separators:
            left = text[:start].rsplit(" ", 1)[-1]
            right = text[end:].split(" ", 1)[0]
            if min(len(left), len(right)) >= MIN_TITLE_SEGMENT_CHARS:
                return " "
        return ""

    return WHITESPACE_RUN.sub(replace, text)


def join_lines(left: str, right: str) -> str:
    """Join a line broken mid-paragraph: no space between Chinese text, one space between Latin words."""
    if not left or not right:
        return left + right
    if _is_cjk(left[-1]) or _is_cjk(right[0]):
        return left + right
    return f"{left} {right}"


def is_clutter(line: str) -> bool:
    """Is this (whitespace-collapsed) line web-page furniture rather than article text?"""
    if len(line) > MAX_CLUTTER_LINE_CHARS:
        return False
    return any(pattern.search(line) for pattern in CLUTTER_PATTERNS)


def clean_lines(blocks: Iterable[Block]) -> list[Block]:
    """One block per non-empty, repaired, whitespace-collapsed line, without clutter, about-blocks or pull-quotes."""
    kept: list[Block] = []
    previous_was_clutter = False
    in_about_block = False
    for block in blocks:
        for raw in block.text.splitlines():
            line = collapse_whitespace(repair_radicals(raw))
            if not line:
                continue
            if is_clutter(line):
                previous_was_clutter, in_about_block = True, False
                continue
            if previous_was_clutter and ABOUT_HEADING.match(line):
                in_about_block = True
            previous_was_clutter = False
            if in_about_block or PULL_QUOTE.match(line):
                continue
            kept.append(replace(block, text=line))
    return kept
