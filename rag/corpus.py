"""From seed files to articles, passages and sentences (the corpus the rest of the app reads).

A seed file is read by the reader for its format (rag.readers) and cleaned (rag.clean), then its lines are classified:
author lines ("□…"), author notes ("(作者系…)", "【作者:…】"), publication info
("信息来源:", "发布日期:"), markdown headings, column-label pinyin and ordinary text.
Each author line, or a lone 2–4 character name right after a title, marks an article
header; the short lines just above it are the title (plus column labels, dropped).
Text between headers is the body of the article above it; an author note closes an
article. Body lines are joined into paragraphs (PDF extraction broke them mid-sentence),
short standalone lines become section headings, and paragraphs become passages of
bounded length split at sentence boundaries.
"""
from __future__ import annotations

import logging
import math
import re
import statistics
import unicodedata
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import jieba

from rag.clean import HAN, HAN_CHAR, clean_lines, join_lines, squeeze_cjk_spaces
from rag.config import Settings
from rag.document import Block, Document, UnreadableDocument
from rag.readers import SUFFIXES, is_document, read_document

log = logging.getLogger(__name__)

DEFAULT_MAX_PASSAGE_CHARS = Settings.max_passage_chars  # 480

SENTENCE_END = "。！？；!?;…"
CLAUSE_END = "，,、：:"  # where an over-long sentence may be cut
# Closing quotes/brackets stay with the sentence they close.
CLOSERS = "”’」』）)】》〉"
ASCII_QUOTE = '"'
ENGLISH_SENTENCE_BREAK = re.compile(r"\s+[A-Z]")

HEADING_MAX_CHARS = 40  # longer lines are always paragraph text
TITLE_MAX_LINES = 12  # a PDF may break a title into one-or-two-character lines
BROKEN_TITLE_PIECE_MAX_CHARS = 3
DERIVED_TITLE_MAX_CHARS = 40
LABEL_RE = re.compile(f"^[{HAN}]{{2,6}}$")  # column labels: 思想观澜, 热点透视, 决策建议 …
PINYIN_RE = re.compile(r"^[A-Z]{1,6}(?: [A-Z]{1,6})+$")  # the label's pinyin: SI XIANG GUAN LAN
NAME_RE = re.compile(f"^[{HAN}]{{2,4}}$")
# Common Chinese surnames: a lone short line is taken as an author's name only if it starts with one.
COMMON_SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕"
    "丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付傅方白邹孟熊秦邱江尹薛闫阎段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃"
    "武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮"
    "柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉"
    "缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师仇栾隋商刁沙荣巫寇桑郎"
    "甄丛仲虞敖巩明佘池查麻苑迟邝"
)
COMPOUND_SURNAMES = ("欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐", "司徒", "夏侯", "长孙", "宇文", "端木")

AUTHOR_MARK_RE = re.compile(r"^□\s*(.+)$")
AUTHOR_LABEL_RE = re.compile(r"^(?:作者|发文单位|发文机关)\s*[:：]\s*(.+)$")  # a notice names its issuer as its author
NAME_SEPARATORS = re.compile(r"[\s、，,；;]+")
NOTE_PATTERN = r"[（(【]\s*作者(?:[均皆都]?[系为是]|简介|单位|\s*[:：])[^（）()【】]*[)）】]"
NOTE_RE = re.compile(f"^{NOTE_PATTERN}$")
NOTE_OPEN_RE = re.compile(r"^[（(【]\s*作者[^（）()【】]*$")  # a note a narrow column broke over lines
NOTE_MAX_LINES = 4
GLUED_NOTE_RE = re.compile(f"^(.*?\\S)\\s*({NOTE_PATTERN})$")
NOTE_AUTHOR_RE = re.compile(r"作者\s*[:：]\s*([^】)）]*?)\s*(?:单位|$|】|[)）])")
# Publication fields of web pages and notices; page-view counters share their line and are cut off, unused.
META_LABEL_RE = re.compile(r"(信息来源|来源|发布日期|发布时间|成文日期|发文字号|浏览次数|点击次数|阅读次数|访问量)\s*[:：]\s*")
PUBLISHED_LABELS = ("发布日期", "发布时间", "成文日期")
CHINESE_DATE_RE = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日")
META_LINE_MAX_CHARS = 160
# Words before publication info on its line are the title ("…若干思考信息来源:…"); bare 来源 only at line start.
META_LINE_RE = re.compile(r"^(?:(?=(?:来源|发文字号)\s*[:：])|(?P<title>[^。！？；!?;]{0,60}?)\s*(?=(?:信息来源|发布日期|发布时间|成文日期)\s*[:：]))")
# In an author note a space stays only before a field ("… 单位:…", "… 本文系…").
NOTE_FIELD_SPACE_RE = re.compile(r"\s+(?=[^\s:：]{1,4}[:：]|本文)")
MARKDOWN_HEADING_RE = re.compile(r"^#{1,6}\s+(.+?)\s*#*$")
# Numbered headings: "一、…", "(一)…", "第一章…", "1. …"
NUMBERED_HEADING_RE = re.compile(r"^(?:[一二三四五六七八九十]+、|[（(][一二三四五六七八九十]+[)）]|第[一二三四五六七八九十\d]+[章节部分篇]|\d{1,2}[.、．]\s*\D)")
# A line ending in one of these words was broken mid-sentence ("…助力数字政府的").
FUNCTION_CHARS = frozenset("的和与及或并而在对把被从向将之为以于其等")
SHORT_CLAUSE_MAX_CHARS = 3  # "点，是产业链…": a next line opening with a clause this short continues the line
BOUNDARY_WINDOW_CHARS = 4
# Text wrapped at a narrow column (PDF) has most lines the same width; a line that fills the column
# continues on the next one and is never a heading. Width counts a CJK character as 1, a Latin one as 1/2.
FULL_LINE_SHARE = 0.9
MIN_COLUMN_LINES = 4  # fewer text lines than this tell nothing about a column
PAGE_PROBE_CHARS = 12  # the opening of a page's first line, found again in the joined paragraph


@dataclass(frozen=True)
class Article:
    id: str  # "<file stem>#<n>", n = 1,2,... in file order
    title: str  # never empty: detected, else the first heading, else the first sentence (trimmed)
    authors: tuple[str, ...]
    source: str  # seed file name
    author_note: str = ""  # "(作者系…)" / "【作者:…】" text, "" if none
    info_source: str = ""  # 信息来源 where present
    published: str = ""  # 发布日期 where present


@dataclass(frozen=True)
class Passage:
    id: str  # "<stem>#<article n>:<paragraph>.<part>", stable while the file is unchanged
    article_id: str
    source: str
    section: str  # nearest heading above within the article, "" if none
    paragraph: int  # 1-based paragraph number in the article
    text: str  # cleaned paragraph text (or a part of a long paragraph)
    sentences: tuple[str, ...]  # in order; each a substring of text
    pages: tuple[int, ...] = ()  # pages it is printed on, for formats with pages (PDF)


@dataclass(frozen=True)
class Corpus:
    articles: tuple[Article, ...]
    passages: tuple[Passage, ...]
    files: tuple[str, ...]  # file names read
    skipped: tuple[str, ...]  # file names skipped (unreadable, undecodable, encrypted, damaged, no text)


# ---------------------------------------------------------------- sentences


def split_sentences(text: str) -> list[str]:
    """Split at 。！？；… (and ASCII !?;), keeping closing quotes/brackets with their sentence."""
    sentences: list[str] = []
    start = i = 0
    quote_open = False  # ASCII '"' opens and closes quotes alike; track which one this is
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == ASCII_QUOTE:
            quote_open = not quote_open
        if not _ends_sentence(text, i):
            i += 1
            continue
        j = i + 1
        while j < n and text[j] in SENTENCE_END:
            j += 1
        while j < n and (text[j] in CLOSERS or (text[j] == ASCII_QUOTE and quote_open)):
            if text[j] == ASCII_QUOTE:
                quote_open = False
            j += 1
        _append_stripped(sentences, text[start:j])
        start = i = j
    _append_stripped(sentences, text[start:])
    return sentences


def _ends_sentence(text: str, i: int) -> bool:
    ch = text[i]
    if ch in SENTENCE_END:
        return True
    # An ASCII full stop ends a sentence between Chinese characters ("稳妥有序.切实做到", a typo
    # for 。) or before a space and a capital letter (English text); "5.1" and "e.g." stay whole.
    return ch == "." and 0 < i and bool(
        (HAN_CHAR.match(text[i - 1]) and HAN_CHAR.match(text[i + 1: i + 2]))
        or ENGLISH_SENTENCE_BREAK.match(text, i + 1)
    )


def _append_stripped(pieces: list[str], piece: str) -> None:
    piece = piece.strip()
    if piece:
        pieces.append(piece)


# ---------------------------------------------------------------- line classification


@dataclass(frozen=True)
class _Line:
    kind: str  # "text", "heading" (markdown or the document's structure), "author", "note", "meta", "pinyin", "title"
    text: str
    names: tuple[str, ...] = ()
    page: int = 0


def _split_names(text: str) -> tuple[str, ...]:
    return tuple(name for name in NAME_SEPARATORS.split(text.strip()) if name)


def _classify(line: str, heading: bool = False) -> list[_Line]:
    """One cleaned line → one or two classified lines (a glued note or metadata is split off)."""
    if heading:
        return [_Line("heading", line)]
    if match := AUTHOR_MARK_RE.match(line):
        return [_Line("author", line, _split_names(match.group(1)))]
    if match := AUTHOR_LABEL_RE.match(line):
        return [_Line("author", line, _split_names(match.group(1)))]
    if NOTE_RE.match(line):
        return [_note(line)]
    if match := GLUED_NOTE_RE.match(line):
        return _classify(match.group(1)) + [_note(match.group(2))]
    if len(line) <= META_LINE_MAX_CHARS and (match := META_LINE_RE.match(line)):
        before = (match.group("title") or "").strip()
        return ([_Line("title", before)] if before else []) + [_Line("meta", line[match.end():])]
    if match := MARKDOWN_HEADING_RE.match(line):
        return [_Line("heading", match.group(1))]
    if PINYIN_RE.match(line):
        return [_Line("pinyin", line)]
    return [_Line("text", line)]


def _note(text: str) -> _Line:
    text = " ".join(squeeze_cjk_spaces(chunk) for chunk in NOTE_FIELD_SPACE_RE.split(text))
    match = NOTE_AUTHOR_RE.search(text)
    names = tuple(n for n in _split_names(match.group(1)) if NAME_RE.match(n)) if match else ()
    return _Line("note", text, names)


def _parse_meta(text: str) -> dict[str, str]:
    """'信息来源:X 发布日期:Y' → {'信息来源': 'X', '发布日期': 'Y'}."""
    matches = list(META_LABEL_RE.finditer(text))
    values = {}
    for match, following in zip(matches, matches[1:] + [None]):
        end = following.start() if following else len(text)
        values[match.group(1)] = text[match.end():end].strip()
    return values


def _is_label(line: _Line) -> bool:
    return line.kind == "text" and bool(LABEL_RE.match(line.text))


def _is_name(text: str) -> bool:
    return bool(NAME_RE.match(text)) and (text[0] in COMMON_SURNAMES or text.startswith(COMPOUND_SURNAMES))


def _is_unterminated_short(text: str) -> bool:
    """A short line with no sentence punctuation in it and none at its end: a title/heading candidate."""
    return (
        len(text) <= HEADING_MAX_CHARS
        and not any(ch in SENTENCE_END for ch in text)
        and text[-1] not in CLAUSE_END
    )


def _is_title_piece(line: _Line) -> bool:
    return line.kind in ("text", "heading", "pinyin", "title") and _is_unterminated_short(line.text)


# ---------------------------------------------------------------- articles


@dataclass
class _Draft:
    """An article while it is being assembled."""

    title: str = ""
    authors: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    body: list[_Line] = field(default_factory=list)
    header_start: int | None = None  # line span of the title/author header, for articles that have one
    header_end: int | None = None


@dataclass(frozen=True)
class _Header:
    start: int  # first line of the title group (labels included)
    end: int  # first line after the author line and the labels below it
    title: str
    authors: tuple[str, ...]


def _find_headers(lines: list[_Line]) -> list[_Header]:
    headers = []
    for i, line in enumerate(lines):
        if line.kind == "author":
            names = line.names
        elif _is_lone_name_after_title(lines, i):
            names = (line.text,)
        else:
            continue
        start = i
        while start > 0 and i - start < TITLE_MAX_LINES and _is_title_piece(lines[start - 1]):
            start -= 1
        if headers and start < headers[-1].end:
            start = headers[-1].end
        headers.append(_Header(start, _skip_labels(lines, i + 1), _title_from_group(lines[start:i]), names))
    return headers


def _is_lone_name_after_title(lines: list[_Line], i: int) -> bool:
    """A 2–4 character name on its own line right after a title (and not followed by a □ author line)."""
    line = lines[i]
    if line.kind != "text" or not _is_name(line.text) or i == 0 or i + 1 >= len(lines):
        return False
    before, after = lines[i - 1], lines[i + 1]
    return (
        before.kind in ("text", "heading")
        and _is_unterminated_short(before.text)
        and not _is_name(before.text)
        and not NUMBERED_HEADING_RE.match(before.text)
        and after.kind == "text"
        and not _is_unterminated_short(after.text)
    )


def _skip_labels(lines: list[_Line], i: int) -> int:
    """Skip column labels and their pinyin directly below an author line."""
    while i + 1 < len(lines) and (lines[i].kind == "pinyin" or _is_label(lines[i])) and lines[i + 1].kind == "text":
        i += 1
    return i


def _title_from_group(group: list[_Line]) -> str:
    """The title among the short lines above an author line; column labels and pinyin are dropped."""
    pieces = [line for line in group if line.kind != "pinyin"]
    if not pieces:
        return ""
    marked = [line for line in pieces if line.kind in ("heading", "title")]
    if marked:
        return _title_text(marked[-1].text)
    if all(len(line.text) <= BROKEN_TITLE_PIECE_MAX_CHARS for line in pieces):
        return "".join(line.text for line in pieces)  # a title broken into tiny PDF lines
    title_lines = [line.text for line in pieces if not _is_label(line)]
    return _title_text(" ".join(title_lines) if title_lines else pieces[-1].text)


def _title_text(text: str) -> str:
    return squeeze_cjk_spaces(text, keep_title_separators=True)


def _drafts(lines: list[_Line]) -> list[_Draft]:
    """Cut the classified lines of one file into draft articles."""
    headers = _find_headers(lines)
    drafts = [_Draft()]  # lines before the first header: an article only if they hold body text
    bounds = [h.start for h in headers] + [len(lines)]
    _collect(drafts, lines[: bounds[0]])
    for header, next_start in zip(headers, bounds[1:]):
        drafts.append(_Draft(header.title, header.authors, header_start=header.start, header_end=header.end))
        _collect(drafts, lines[header.end: max(header.end, next_start)])
    drafts = [draft for draft in drafts if draft.header_end is not None or draft.body]
    _move_displaced_bodies(drafts)
    return [_finish(draft) for draft in drafts]


def _collect(drafts: list[_Draft], span: list[_Line]) -> None:
    """Add a span of lines to the last draft; an author note closes it (later lines start a new one)."""
    for line in span:
        draft = drafts[-1]
        if line.kind == "note":
            draft.notes.append(line.text)
            draft.authors = draft.authors or line.names
            drafts.append(_Draft())
        elif line.kind == "meta":
            draft.meta.update(_parse_meta(line.text))
        elif line.kind == "title" and not draft.title and not draft.body:
            draft.title = _title_text(line.text)
        elif line.kind in ("text", "heading", "title"):
            draft.body.append(line)


def _move_displaced_bodies(drafts: list[_Draft]) -> None:
    """A header directly followed by another header has its body earlier in the file.

    PDF extraction can put an article's title and author after its text. Its text is then
    the tail of the previous article's body, starting at a column-label line ("热点透视").
    """
    for k in range(1, len(drafts) - 1):
        draft, previous, following = drafts[k], drafts[k - 1], drafts[k + 1]
        if draft.body or draft.header_end is None or following.header_start != draft.header_end:
            continue
        label_at = [
            j for j, line in enumerate(previous.body[:-1])
            if _is_label(line) and not _is_label(previous.body[j + 1])
        ]
        if label_at:
            cut = label_at[-1]
            draft.body = previous.body[cut + 1:]
            previous.body = previous.body[:cut]


def _finish(draft: _Draft) -> _Draft:
    """Take a leading title and a trailing author name out of the body of a draft."""
    body = list(draft.body)
    if draft.header_end is None and not draft.title and body and _is_leading_title(body):
        draft.title = _title_text(body.pop(0).text)
    if not draft.authors and body and body[-1].kind == "text" and _is_name(body[-1].text):
        draft.authors = (body.pop().text,)
    draft.body = body
    return draft


def _is_leading_title(body: list[_Line]) -> bool:
    first = body[0]
    if first.kind == "heading":
        return True
    return (
        len(body) > 1
        and first.kind == "text"
        and _is_unterminated_short(first.text)
        and not NUMBERED_HEADING_RE.match(first.text)
        and not _is_label(body[1])
    )


# ---------------------------------------------------------------- paragraphs


@lru_cache(maxsize=1)
def _tokenizer() -> jieba.Tokenizer:
    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer


def _words(text: str) -> list[str]:
    return _tokenizer().lcut(text, HMM=False)


def _first_clause(text: str) -> str:
    match = re.search(f"[{SENTENCE_END}{CLAUSE_END}]", text)
    return text[: match.start()] if match else text


def _is_broken_line(line: str, next_line: str) -> bool:
    """Does a short unpunctuated line continue on the next line (rather than being a heading)?"""
    if _words(line)[-1] in FUNCTION_CHARS:
        return True
    clause = _first_clause(next_line)
    if not clause:
        return True  # the next line opens with punctuation
    if clause != next_line and (len(clause) == 1 or (len(clause) <= SHORT_CLAUSE_MAX_CHARS and len(_words(clause)) > 1)):
        return True
    # A word spanning the break ("关键节" + "点") means the line was cut mid-word.
    tail, head = line[-BOUNDARY_WINDOW_CHARS:], next_line[:BOUNDARY_WINDOW_CHARS]
    offset = 0
    for word in _words(tail + head):
        if offset < len(tail) < offset + len(word):
            return True
        offset += len(word)
    return False


def _width(text: str) -> float:
    return sum(1 if unicodedata.east_asian_width(ch) in "WF" else 0.5 for ch in text)


def _column_width(lines: list[_Line]) -> float:
    """The width text lines are wrapped at, when they are wrapped at a heading-short column; else 0."""
    widths = [_width(line.text) for line in lines if line.kind == "text"]
    if len(widths) < MIN_COLUMN_LINES:
        return 0.0
    upper_quartile = statistics.quantiles(widths, n=4)[2]
    return upper_quartile if upper_quartile <= HEADING_MAX_CHARS else 0.0


def _is_heading(line: _Line, next_line: _Line | None, column_width: float = 0.0) -> bool:
    if line.kind == "heading":
        return True
    text = line.text
    if next_line is None or not _is_unterminated_short(text):
        return False
    if column_width and _width(text) >= FULL_LINE_SHARE * column_width:
        return False
    if NUMBERED_HEADING_RE.match(text):
        return True
    return not _is_broken_line(squeeze_cjk_spaces(text), squeeze_cjk_spaces(next_line.text))


def _is_terminated(text: str) -> bool:
    stripped = text.rstrip(CLOSERS + ASCII_QUOTE)
    return bool(stripped) and stripped[-1] in SENTENCE_END + "：:"


# A block of an article: ("heading" | "paragraph", text, (offset, page) where each of its pages starts).
_TextBlock = tuple[str, str, tuple[tuple[int, int], ...]]


def _blocks(body: list[_Line], column_width: float = 0.0) -> list[_TextBlock]:
    """Body lines → headings and paragraphs: lines broken mid-sentence (or filling a column) are joined."""
    blocks: list[_TextBlock] = []
    current: list[_Line] = []
    for i, line in enumerate(body):
        next_line = body[i + 1] if i + 1 < len(body) else None
        strong_heading = line.kind == "heading" or (
            NUMBERED_HEADING_RE.match(line.text) and _is_unterminated_short(line.text)
        )
        if current and strong_heading:
            blocks.append(_paragraph(current))
            current = []
        if not current and _is_heading(line, next_line, column_width):
            blocks.append(("heading", _title_text(line.text), ()))
            continue
        current.append(line)
        if _is_terminated(current[-1].text) or next_line is None:
            blocks.append(_paragraph(current))
            current = []
    return blocks


def _paragraph(lines: list[_Line]) -> _TextBlock:
    text = ""
    for line in lines:
        text = join_lines(text, line.text)
    text = squeeze_cjk_spaces(text)
    return "paragraph", text, _page_marks(text, lines)


def _page_marks(text: str, lines: list[_Line]) -> tuple[tuple[int, int], ...]:
    """(offset in text, page) where the lines of each page start; () for text without pages."""
    if not lines[0].page:
        return ()
    marks = [(0, lines[0].page)]
    for line in lines[1:]:
        if line.page != marks[-1][1]:
            at = text.find(squeeze_cjk_spaces(line.text)[:PAGE_PROBE_CHARS], marks[-1][0])
            if at > marks[-1][0]:
                marks.append((at, line.page))
    return tuple(marks)


def _pages_between(marks: tuple[tuple[int, int], ...], start: int, end: int) -> tuple[int, ...]:
    """The pages a span [start, end) of a paragraph is printed on."""
    pages = [page for offset, page in marks if offset <= start][-1:] + [page for offset, page in marks if start < offset < end]
    return tuple(sorted(set(pages)))


# ---------------------------------------------------------------- passages


def _cut_long_sentence(sentence: str, max_chars: int) -> list[str]:
    """Cut a sentence longer than max_chars after comma-class punctuation (hard cut if there is none)."""
    pieces = []
    while len(sentence) > max_chars:
        window = sentence[:max_chars]
        cut = max(window.rfind(ch) for ch in CLAUSE_END) + 1
        if cut <= 0:
            cut = max_chars
        pieces.append(sentence[:cut])
        sentence = sentence[cut:]
    return pieces + ([sentence] if sentence else [])


def _units(paragraph: str, max_chars: int) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences (or sentence pieces) of a paragraph."""
    spans, pos = [], 0
    for sentence in split_sentences(paragraph):
        for piece in _cut_long_sentence(sentence, max_chars):
            piece = piece.strip()
            if not piece:
                continue
            start = paragraph.index(piece, pos)
            pos = start + len(piece)
            spans.append((start, pos))
    return spans


def _parts(paragraph: str, max_chars: int) -> list[list[tuple[int, int]]]:
    """Group sentence spans into parts of at most max_chars, of roughly even length."""
    spans = _units(paragraph, max_chars)
    total = len(paragraph)
    target = math.ceil(total / math.ceil(total / max_chars)) if total else 0
    parts: list[list[tuple[int, int]]] = []
    for span in spans:
        if parts:
            current = parts[-1]
            length_with = span[1] - current[0][0]
            length_now = current[-1][1] - current[0][0]
            if length_with <= max_chars and length_now < target:
                current.append(span)
                continue
        parts.append([span])
    return parts


def passages_of(article: Article, blocks: list[_TextBlock], max_chars: int) -> list[Passage]:
    """Passages of an article from its heading and paragraph blocks: headings become sections."""
    passages = []
    section = ""
    paragraph_no = 0
    for kind, text, marks in blocks:
        if kind == "heading":
            section = text
            continue
        paragraph_no += 1
        for part_no, part in enumerate(_parts(text, max_chars), start=1):
            start, end = part[0][0], part[-1][1]
            passages.append(
                Passage(
                    id=f"{article.id}:{paragraph_no}.{part_no}",
                    article_id=article.id,
                    source=article.source,
                    section=section,
                    paragraph=paragraph_no,
                    text=text[start:end],
                    sentences=tuple(text[a:b] for a, b in part),
                    pages=_pages_between(marks, start, end),
                )
            )
    return passages


# ---------------------------------------------------------------- files


def _derived_title(blocks: list[_TextBlock]) -> str:
    """First heading, else the first sentence (trimmed at a comma near DERIVED_TITLE_MAX_CHARS)."""
    for kind, text, _ in blocks:
        if kind == "heading":
            return text
    for _, text, _ in blocks:
        sentence = split_sentences(text)[0].rstrip(SENTENCE_END + CLOSERS)
        if len(sentence) <= DERIVED_TITLE_MAX_CHARS:
            return sentence
        window = sentence[:DERIVED_TITLE_MAX_CHARS]
        cut = max(window.rfind(ch) for ch in CLAUSE_END)
        return (window[:cut] if cut > 0 else window) + "…"
    return ""


def _iso_date(text: str) -> str:
    """"2025年5月20日" → "2025-05-20"; other forms as they are."""
    return CHINESE_DATE_RE.sub(lambda m: f"{m[1]}-{int(m[2]):02d}-{int(m[3]):02d}", text)


def _join_broken_notes(blocks: list[Block]) -> list[Block]:
    """Join an author note "（作者系…" that goes on over the next few lines into one line."""
    joined: list[Block] = []
    i = 0
    while i < len(blocks):
        block = blocks[i]
        if NOTE_OPEN_RE.match(block.text):
            for j in range(i + 1, min(i + NOTE_MAX_LINES, len(blocks))):
                text = "".join(b.text for b in blocks[i: j + 1])
                if NOTE_RE.match(text):
                    block, i = replace(block, text=text), j
                    break
        joined.append(block)
        i += 1
    return joined


def parse_file(path: Path, max_passage_chars: int = DEFAULT_MAX_PASSAGE_CHARS) -> tuple[list[Article], list[Passage]]:
    """Articles and passages of one file (raises UnreadableDocument, UnicodeDecodeError or OSError if it cannot be read)."""
    path = Path(path)
    document = read_document(path)
    lines = [
        replace(classified, page=block.page)
        for block in _join_broken_notes(clean_lines(document.blocks))
        for classified in _classify(block.text, block.heading)
    ]
    drafts = _drafts(lines)
    column_width = _column_width(lines)
    if not drafts:
        raise UnreadableDocument("scanned" if path.suffix.lower() == ".pdf" else "no_text")
    articles: list[Article] = []
    passages: list[Passage] = []
    for n, draft in enumerate(drafts, start=1):
        blocks = _blocks(draft.body, column_width)
        # The format's own metadata names a file's only article where its text does not.
        known = document if len(drafts) == 1 else Document(())
        article = Article(
            id=f"{path.stem}#{n}",
            title=draft.title or known.title or _derived_title(blocks) or path.stem,
            authors=draft.authors or known.authors,
            source=path.name,
            author_note=" ".join(draft.notes),
            info_source=draft.meta.get("信息来源") or draft.meta.get("来源", ""),
            published=_iso_date(next((draft.meta[label] for label in PUBLISHED_LABELS if draft.meta.get(label)), known.published)),
        )
        articles.append(article)
        passages.extend(passages_of(article, blocks, max_passage_chars))
    return articles, passages


def load_corpus(seeds_dir: Path, max_passage_chars: int = DEFAULT_MAX_PASSAGE_CHARS) -> Corpus:
    """Read every supported file in seeds_dir (sorted by name) into articles and passages; unreadable ones are skipped."""
    seeds_dir = Path(seeds_dir)
    if not seeds_dir.is_dir():
        raise FileNotFoundError(f"Seeds folder not found: {seeds_dir}")
    paths = sorted(p for p in seeds_dir.iterdir() if is_document(p))
    if not paths:
        raise FileNotFoundError(f"No supported documents ({', '.join(SUFFIXES)}) in seeds folder: {seeds_dir}")
    articles: list[Article] = []
    passages: list[Passage] = []
    files: list[str] = []
    skipped: list[str] = []
    for path in paths:
        try:
            file_articles, file_passages = parse_file(path, max_passage_chars)
        except UnicodeDecodeError as error:
            log.warning("Skipping %s: cannot decode it (%s)", path.name, error.reason)
            skipped.append(path.name)
            continue
        except UnreadableDocument as error:
            log.warning("Skipping %s: %s", path.name, error)
            skipped.append(path.name)
            continue
        except OSError as error:  # unreadable (permissions, a dangling link): the other files still count
            log.warning("Skipping %s: cannot read it (%s)", path.name, error.strerror or error)
            skipped.append(path.name)
            continue
        files.append(path.name)
        articles.extend(file_articles)
        passages.extend(file_passages)
    return Corpus(tuple(articles), tuple(passages), tuple(files), tuple(skipped))
