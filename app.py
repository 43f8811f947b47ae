"""Gradio chat over the policy articles, and their knowledge base: `python app.py [--host H] [--port P] [--read-only] …`."""
from __future__ import annotations

import argparse
import base64
import hashlib
import html
import ipaddress
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import gradio as gr
from fastapi import Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from rag.answer import page_label
from rag.auth import load_users, verify
from rag.build import add_settings_arguments, settings_from
from rag.config import Settings
from rag.corpus import Article
from rag.followup import with_context
from rag.index import Index, IndexUnavailable
from rag.library import add_document, documents, remove_document
from rag.messages import Problem
from rag.model import ModelError
from rag.pipeline import Pipeline
from rag.readers import SUFFIXES

log = logging.getLogger("app")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
MIN_PASSAGES, MAX_PASSAGES = 1, 10
QUESTION_MIN_WIDTH = 320
MAX_REQUEST_BYTES = 4 * 1024 * 1024  # a longer HTTP request body is refused with 413 (a long chat's history fits)
UPLOAD_PATH = "/upload"  # Gradio's upload route: its bodies may be as large as Settings.max_upload_mb, plus the form
UPLOAD_FORM_BYTES = 64 * 1024  # multipart headers and boundaries around an uploaded file
API_NAME = "ask"
ASK_ROUTE = "/api/ask"  # the plain JSON route: POST {"question": …, "top_k": 5} → Answer.to_dict()
CHAT_HEIGHT = "min(640px, 62vh)"  # leaves the question box on the first screen of a phone
SCORE_FORMAT = "{:.3f}"
# Every word the page shows, in Chinese (the default) and in English (for a browser that asks for English first).
TEXT = {
    "zh": {
        "title": "政策文章问答", "heading": "## 政策文章问答", "intro": "用中文或英文提问；回答句子逐字引自文章，并附出处。",
        "chat_placeholder": "问一个关于这些政策文章的问题", "box_placeholder": "输入问题，按回车", "passages": "段落数",
        "abstain": "这些文章没有回答这个问题。", "sources": "来源", "related": "可能相关的段落",
        "other": "其他检索到的段落", "passage": "段落 {n}", "references": "参考文献：", "error": "出错了，请稍后再试。",
        "asked": "按上文理解为：{q}",
        "tab_chat": "问答", "tab_library": "知识库", "col_title": "标题", "col_authors": "作者", "col_file": "文件",
        "col_date": "日期", "col_passages": "段落", "open_hint": "点击一行，查看文章全文（上一个回答引用的句子会标出）。", "open": "读全文",
        "upload": "添加文件（PDF、Word、网页、文本）", "add": "添加到知识库", "remove_choice": "要移除的文件",
        "remove": "移除", "added": "已添加：{names}。", "rejected": "未添加：{reasons}。", "removed": "已移除：{name}。",
        "rebuilt": "索引已更新：{articles} 篇文章，{passages} 个段落（{seconds:.1f} 秒）。", "nothing": "请先选择文件。",
        "read_only": "知识库在这里是只读的。", "article_meta": "{authors} · {file} · {date}",
        "stale": "文章已有改动，但索引未能重建：这个回答来自改动前的索引。",
    },
    "en": {
        "title": "Policy articles Q&A", "heading": "## Policy articles Q&A", "intro": "Ask in Chinese or English; answers quote the articles verbatim, with sources.",
        "chat_placeholder": "Ask something about the policy articles", "box_placeholder": "Type a question and press Enter",
        "passages": "Passages", "abstain": "The articles do not answer this.", "sources": "Sources",
        "related": "Possibly related passages", "other": "Other retrieved passages", "passage": "Passage {n}",
        "references": "References:", "error": "Something went wrong; please try again.",
        "asked": "Read with the previous question: {q}",
        "tab_chat": "Chat", "tab_library": "Knowledge base", "col_title": "Title", "col_authors": "Authors",
        "col_file": "File", "col_date": "Date", "col_passages": "Passages",
        "open_hint": "Click a row to read the article in full (sentences the last answer quoted are marked).", "open": "Read it all",
        "upload": "Add files (PDF, Word, web page, text)", "add": "Add to the knowledge base",
        "remove_choice": "File to remove", "remove": "Remove", "added": "Added: {names}.", "rejected": "Not added: {reasons}.",
        "removed": "Removed: {name}.", "rebuilt": "Index updated: {articles} articles, {passages} passages ({seconds:.1f} s).",
        "nothing": "Choose files first.", "read_only": "The knowledge base is read-only here.",
        "article_meta": "{authors} · {file} · {date}",
        "stale": "The articles changed but the index could not be rebuilt: this answer comes from the index as it was.",
    },
}
LANGUAGES = tuple(TEXT)  # the first is the default
I18N = gr.I18n(**{lang: {k: v for k, v in words.items() if "{" not in v} for lang, words in TEXT.items()})
MAX_CITED_AUTHORS = 3  # GB/T 7714: the first three, then 等
# The chat's copy buttons copy a message's HTML; this makes them copy each reply's plain text (its .rag-copy) instead.
COPY_AS_PLAIN_TEXT = """<script>
(() => {
  const clip = navigator.clipboard;
  if (!clip || clip.ragPlainText) return;
  const write = clip.writeText.bind(clip);
  clip.writeText = (text) => {
    text = String(text);
    if (!text.includes('rag-reply')) return write(text);
    const doc = new DOMParser().parseFromString(text, 'text/html');
    doc.querySelectorAll('.rag-reply').forEach(reply => {
      const copy = reply.querySelector('.rag-copy');
      reply.replaceWith(doc.createTextNode((copy || reply).textContent.trim()));
    });
    return write(doc.body.textContent.trim());
  };
  clip.ragPlainText = true;
})();
</script>"""
# A source's "read it all" button (rendered inside the chat, so it cannot carry a Gradio event itself) writes the article
# id into a hidden box, whose change event opens the article in the knowledge-base tab; the click's time after a newline
# makes a second click on the same article a change too.
OPEN_ID_CLASS = "rag-id-"  # followed by the article id's UTF-8 bytes in hex
OPEN_CITED_ARTICLE = """<script>
document.addEventListener('click', (event) => {
  const button = event.target.closest && event.target.closest('.rag-open');
  const box = document.querySelector('#open-article textarea');
  const hex = button && [...button.classList].find(c => c.startsWith('%s'));
  if (!hex || !box) return;
  const bytes = hex.slice(%d).match(/../g).map(h => parseInt(h, 16));
  box.value = new TextDecoder().decode(new Uint8Array(bytes)) + '\\n' + Date.now();
  box.dispatchEvent(new Event('input', {bubbles: true}));
});
</script>""" % (OPEN_ID_CLASS, len(OPEN_ID_CLASS))
CHAT_TAB_ID, LIBRARY_TAB_ID = "chat", "library"
FEEDBACK_FILE = "feedback.jsonl"  # beside the index: question, answer, passage ids and 👍/👎, one a line
FEEDBACK_LOCK = threading.Lock()
RECORD_RE = re.compile(r'<div class="rag-record" hidden(?:="")?>(.*?)</div>', re.S)
ERROR_PREFIX = "⚠️ "
EXAMPLES = (
    "如何释放被抑制的消费需求？",
    "什么是数字孪生城市？",
    "How can blockchain technology help build a fair and trustworthy business environment?",
)
# Every reply is HTML built here, with each document-derived string passed through html.escape.
# The chatbot must not re-interpret it: no Markdown, no LaTeX, and Gradio's sanitizer stays on.
CHATBOT_SAFETY = {"render_markdown": False, "sanitize_html": True, "latex_delimiters": []}
FONTS = ("Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", "system-ui", "sans-serif")
CSS = """
.rag-reply p { margin: 0 0 .4em 0; }
.rag-ref { color: #888; font-size: .75em; vertical-align: super; margin-left: .15em; }
.rag-abstain { font-weight: 600; }
.rag-error { color: #b42318; }
.rag-notice { color: #b54708; font-size: .85em; }
.rag-heading { font-weight: 600; margin: .8em 0 .3em 0; }
.rag-sources { margin: 0; padding-left: .2em; list-style: none; }
.rag-sources > li { margin-bottom: .5em; }
.rag-article-title { font-weight: 600; }
.rag-open { background: none; border: none; padding: 0 .2em; color: #2563eb; font-size: .8em; cursor: pointer; text-decoration: underline; }
.dark .rag-open { color: #93c5fd; }
.rag-meta, .rag-score, .rag-timing { color: #888; font-size: .8em; }
.rag-reply details { margin: .25em 0 .25em 1.2em; }
.rag-reply summary { cursor: pointer; }
.rag-passage { border-left: 3px solid #ddd; padding: .2em 0 .2em .6em; margin: .3em 0; }
.rag-reply mark, .rag-article mark { background: #fde68a; color: #1f2937; padding: 0 .1em; }
.dark .rag-reply mark, .dark .rag-article mark { background: #854d0e; color: #fef9c3; }
.rag-article h3 { margin: .8em 0 .3em 0; }
.rag-article p { margin: 0 0 .6em 0; line-height: 1.7; }
"""
LOOPBACK_NAMES = ("localhost", "")  # and any loopback address
ARTICLE_COLUMNS = ("col_title", "col_authors", "col_file", "col_date", "col_passages")


def _e(value: Any) -> str:
    """HTML-escape any value as text (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


def _score(value: Any) -> str:
    """A score as short text, whatever its type."""
    return SCORE_FORMAT.format(value) if isinstance(value, (int, float)) else _e(value)


def highlight(text: str, sentences: Sequence[str]) -> str:
    """Escaped `text` with every verbatim occurrence of `sentences` wrapped in <mark> (spans found on the raw text, each piece escaped)."""
    spans: list[tuple[int, int]] = []
    for sentence in {s.strip() for s in sentences if s and s.strip()}:
        start = text.find(sentence)
        while start != -1:
            spans.append((start, start + len(sentence)))
            start = text.find(sentence, start + len(sentence))
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out, done = [], 0
    for start, end in merged:
        out.append(f"{_e(text[done:start])}<mark>{_e(text[start:end])}</mark>")
        done = end
    out.append(_e(text[done:]))
    return "".join(out).replace("\n", "<br>")


def _authors(article: dict[str, Any]) -> str:
    """Escaped authors joined by "、", or a dash."""
    return _e("、".join(article.get("authors") or ()) or "—")


def _article_line(article: dict[str, Any], number: int | None = None, open_label: str = "") -> str:
    """Title, authors and file (with the quoted pages of a PDF) of one article; with `open_label`, a button to read it all."""
    ref = f'<span class="rag-ref">[{number}]</span> ' if number is not None else ""
    pages = page_label(article.get("pages") or ())
    article_id = str(article.get("article_id") or "")  # in a class: the chat's sanitizer keeps classes, not data-*
    opener = (f' <button type="button" class="rag-open {OPEN_ID_CLASS}{article_id.encode().hex()}">{_e(open_label)}</button>'
              if open_label and article_id else "")
    return (
        f'{ref}<span class="rag-article-title">{_e(article.get("title") or "—")}</span>'
        f' <span class="rag-meta">· {_authors(article)} · <code>{_e(article.get("source"))}</code>'
        f'{", " + pages if pages else ""}</span>{opener}'
    )


def language_of(request: gr.Request | None) -> str:
    """"en" when the browser puts English first in Accept-Language, else Chinese."""
    accepted = (request.headers.get("accept-language", "") if request is not None else "").strip().lower()
    return "en" if accepted.startswith("en") else LANGUAGES[0]


def _passage(passage: dict[str, Any], sentences: Sequence[str], number: int, words: dict[str, str]) -> str:
    """One passage as a collapsed <details>, answer sentences highlighted, scores small and grey."""
    section = passage.get("section")
    supports = any(s and s in (passage.get("text") or "") for s in sentences)
    pages = page_label(passage.get("pages") or ())
    label = (words["passage"].format(n=number) + (f" · {_e(section)}" if section else "") + (f" · {pages}" if pages else "")
             + (" ✓" if supports else ""))
    scores = (
        f"score {_score(passage.get('score'))} · dense {_score(passage.get('dense_score'))}"
        f" · keyword {_score(passage.get('keyword_score'))} · id <code>{_e(passage.get('id'))}</code>"
    )
    return (
        f'<details class="rag-details"><summary>{label}</summary>'
        f'<div class="rag-passage">{highlight(passage.get("text") or "", sentences)}</div>'
        f'<div class="rag-score">{scores}</div></details>'
    )


def _grouped_sources(groups: list[tuple[dict[str, Any], list[dict[str, Any]]]], sentences: Sequence[str], numbered: bool, words: dict[str, str]) -> str:
    """A list of articles, each with its passages."""
    items, count = [], 0
    for i, (article, passages) in enumerate(groups, start=1):
        rendered = []
        for passage in passages:
            count += 1
            rendered.append(_passage(passage, sentences, count, words))
        items.append(f'<li>{_article_line(article, i if numbered else None, words["open"])}{"".join(rendered)}</li>')
    return f'<ul class="rag-sources">{"".join(items)}</ul>'


def _article_key(article: dict[str, Any]) -> str:
    """What tells articles apart: their id, since one file may hold several articles."""
    return str(article.get("article_id") or (article.get("source"), article.get("title")))


def _group_by_article(passages: Sequence[dict[str, Any]], first: Sequence[dict[str, Any]] = ()) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Passages grouped by their article; articles in `first` come first, in that order."""
    groups: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for article in first:
        groups.setdefault(_article_key(article), (article, []))
    for passage in passages:
        article = passage.get("article") or {}
        groups.setdefault(_article_key(article), (article, []))[1].append(passage)
    return list(groups.values())


def reference(citation: dict[str, Any]) -> str:
    """A citation in GB/T 7714 style: authors (three, then 等). title[type]. where, when."""
    authors = list(citation.get("authors") or ())
    names = ", ".join(authors[:MAX_CITED_AUTHORS]) + (", 等" if len(authors) > MAX_CITED_AUTHORS else "")
    kind = "EB/OL" if citation.get("info_source") else "Z"  # a web page names its source; otherwise unspecified
    where = ", ".join(str(part) for part in (citation.get("info_source") or citation.get("source"), citation.get("published")) if part)
    pages = citation.get("pages") or ()
    span = f": {min(pages)}" + (f"-{max(pages)}" if len(pages) > 1 else "") if pages else ""
    return f"{names + '. ' if names else ''}{citation.get('title') or '—'}[{kind}]. {where}{span}."


def plain_text(answer: dict[str, Any], lang: str = LANGUAGES[0]) -> str:
    """The answer as a researcher pastes it: the quoted sentences with [n] marks, then the references."""
    if answer.get("abstained"):
        return TEXT[lang]["abstain"]
    citations = answer.get("citations") or []
    number = {_article_key(c): i for i, c in enumerate(citations, start=1)}
    quoted = "".join(f"{e.get('text')}[{number[_article_key(e)]}]" if _article_key(e) in number else str(e.get("text"))
                     for e in answer.get("evidence") or []) or str(answer.get("answer") or "")
    references = "\n".join(f"[{i}] {reference(c)}" for i, c in enumerate(citations, start=1))
    return f"{quoted}\n\n{TEXT[lang]['references']}\n{references}" if references else quoted


def feedback_record(answer: dict[str, Any]) -> dict[str, Any]:
    """What a 👍/👎 on this answer records, so that it can be reviewed and the reader refitted."""
    return {
        "question": answer.get("question"), "answer": answer.get("answer"), "abstained": answer.get("abstained"),
        "confidence": answer.get("confidence"), "passage_ids": [p.get("id") for p in answer.get("passages") or []],
        "evidence_ids": [e.get("passage_id") for e in answer.get("evidence") or []],
    }


def save_feedback(path: Path, message: Any, liked: bool) -> bool:
    """Append the rated answer's record to the JSONL file; False for a message that is not an answer (an error)."""
    content = message.get("value", message) if isinstance(message, dict) else message
    found = RECORD_RE.search(str(content))
    if not found:
        return False
    line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "liked": liked, **json.loads(html.unescape(found.group(1)))}
    with FEEDBACK_LOCK, path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(line, ensure_ascii=False) + "\n")
    return True


def render_answer(answer: dict[str, Any], lang: str = LANGUAGES[0], followup: bool = False) -> str:
    """The chat reply for an `Answer.to_dict()`: answer sentences, then cited articles with their passages.

    For a follow-up it first says how the question was read (joined to the previous one).
    """
    words = TEXT[lang]
    evidence = answer.get("evidence") or []
    passages = answer.get("passages") or []
    citations = answer.get("citations") or []
    sentences = [e.get("text") or "" for e in evidence]
    cited = {_article_key(c) for c in citations}
    parts = ['<div class="rag-reply">']
    if followup:
        parts.append(f'<p class="rag-meta rag-asked">{_e(words["asked"].format(q=answer.get("question")))}</p>')
    if answer.get("abstained"):
        parts.append(f'<p class="rag-abstain">{_e(words["abstain"])}</p>')
        if passages:
            parts.append(f'<div class="rag-heading">{_e(words["related"])}</div>')
            parts.append(_grouped_sources(_group_by_article(passages), sentences, False, words))
    else:
        number = {_article_key(c): i for i, c in enumerate(citations, start=1)}
        if evidence:
            for item in evidence:
                ref = number.get(_article_key(item))
                tag = f'<span class="rag-ref">[{ref}]</span>' if ref else ""
                parts.append(f'<p class="rag-sentence">{_e(item.get("text"))}{tag}</p>')
        else:
            parts.append(f'<p class="rag-sentence">{_e(answer.get("answer"))}</p>')
        groups = _group_by_article(passages, citations)
        parts.append(f'<div class="rag-heading">{_e(words["sources"])}</div>')
        parts.append(_grouped_sources([g for g in groups if _article_key(g[0]) in cited], sentences, True, words))
        others = [g for g in groups if _article_key(g[0]) not in cited]
        if others:
            parts.append(f'<details class="rag-others"><summary class="rag-meta">{_e(words["other"])}</summary>')
            parts.append(_grouped_sources(others, sentences, False, words) + "</details>")
    if answer.get("notice"):
        parts.append(f'<p class="rag-notice" title="{_e(answer["notice"])}">{_e(words["stale"])}</p>')  # the details on hover
    parts.append(f'<div class="rag-copy" hidden>{_e(plain_text(answer, lang))}</div>')  # what the copy buttons copy
    parts.append(f'<div class="rag-record" hidden>{_e(json.dumps(feedback_record(answer), ensure_ascii=False))}</div>')
    timings = answer.get("timings_ms") or {}
    if timings:
        parts.append(f'<div class="rag-timing">{" · ".join(f"{_e(k)} {v:.0f} ms" for k, v in timings.items())}</div>')
    parts.append("</div>")
    return "".join(parts)


def article_table(index: Index, lang: str = LANGUAGES[0]) -> dict[str, list]:
    """The knowledge-base table: one row per indexed article (title, authors, file, date, passages), headed in `lang`."""
    rows = [[a.title, "、".join(a.authors), a.source, a.published, len(index.article_passages.get(a.id, []))] for a in index.articles.values()]
    return {"headers": [TEXT[lang][k] for k in ARTICLE_COLUMNS], "data": rows}


def find_article(index: Index, title: str, source: str) -> Article | None:
    """The article of a knowledge-base table row (its title and file)."""
    return next((a for a in index.articles.values() if a.title == title and a.source == source), None)


def render_article(index: Index, article: Article, quoted: Sequence[str], lang: str = LANGUAGES[0]) -> str:
    """An article in full, by section, with the sentences of the last answer marked and the pages of a PDF shown."""
    by = "、".join(article.authors) or article.info_source or "—"
    meta = TEXT[lang]["article_meta"].format(authors=_e(by), file=f"<code>{_e(article.source)}</code>", date=_e(article.published or "—"))
    parts = [f'<div class="rag-article"><h2>{_e(article.title)}</h2><p class="rag-meta">{meta}</p>']
    if article.author_note:
        parts.append(f'<p class="rag-meta">{_e(article.author_note)}</p>')
    section = ""
    for passage in (index.passages[row] for row in index.article_passages.get(article.id, [])):
        if passage.section != section:
            section = passage.section
            parts.append(f"<h3>{_e(section)}</h3>")
        pages = page_label(passage.pages)
        parts.append(f'<p>{highlight(passage.text, quoted)}{f" <span class=rag-meta>{pages}</span>" if pages else ""}</p>')
    parts.append("</div>")
    return "".join(parts)


def render_error(message: str) -> str:
    """A user-readable error as a chat reply."""
    return f'<div class="rag-reply"><p class="rag-error">{ERROR_PREFIX}{_e(message)}</p></div>'


def _message_text(message: dict[str, Any]) -> str:
    """A chat message's text, whether Gradio hands it back as a string or as a list of typed parts."""
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return html.unescape(str(content or ""))


class TooLarge(HTTPException):
    """A request body went past the limit while it was being read (413, whoever catches it)."""

    def __init__(self, max_bytes: int):
        super().__init__(413, f"Request body over {max_bytes} bytes.")


class BodyLimit:
    """ASGI middleware: an HTTP request whose body is over `max_bytes` (`max_upload_bytes` for an upload) is answered 413."""

    def __init__(self, app: Any, max_bytes: int = MAX_REQUEST_BYTES, max_upload_bytes: int = MAX_REQUEST_BYTES):
        self.app, self.max_bytes, self.max_upload_bytes = app, max_bytes, max_upload_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Check the declared length first, then count the bytes as they arrive (a chunked body declares none)."""
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_upload_bytes if scope.get("path", "").endswith(UPLOAD_PATH) else self.max_bytes
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > limit:
            return await self._refuse(send, limit)
        received, started = 0, False

        async def counted_receive() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise TooLarge(limit)
            return message

        async def watched_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except TooLarge:
            if not started:
                await self._refuse(send, limit)

    @staticmethod
    async def _refuse(send: Any, limit: int) -> None:
        """A plain 413 reply."""
        body = f"Request body over {limit} bytes.".encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def ask_route(pipeline: Pipeline, settings: Settings, auth: Any = None) -> APIRoute:
    """POST /api/ask: one question in, Answer.to_dict() out as JSON, in arrival order, without Gradio's queue and sessions.

    Answers Settings.concurrency questions at once (their embeddings batched); with `auth` (name, password → bool)
    it asks for HTTP Basic credentials, each pair checked once.
    """
    limiter = anyio.CapacityLimiter(settings.concurrency)
    verified: set[bytes] = set()  # digests of credentials already checked: PBKDF2 is slow on purpose

    def allowed(header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if auth is None:
            return True
        if scheme.lower() != "basic":
            return False
        digest = hashlib.sha256(encoded.encode()).digest()
        if digest not in verified:
            try:
                name, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
            except ValueError:  # not base64, or not UTF-8
                return False
            if not auth(name, password):
                return False
            verified.add(digest)
        return True

    async def endpoint(request: Request) -> JSONResponse:
        lang = "zh" if request.headers.get("accept-language", "").lower().startswith("zh") else "en"
        if not allowed(request.headers.get("authorization", "")):
            return JSONResponse({"error": "login required"}, 401, {"WWW-Authenticate": 'Basic realm="policy-rag"'})
        try:
            body = await request.json()
            question, top_k = body["question"], body.get("top_k", settings.top_k)
            if not isinstance(question, str) or isinstance(top_k, bool) or not isinstance(top_k, int):
                raise TypeError
        except (ValueError, TypeError, KeyError):
            return JSONResponse({"error": 'expected a JSON object {"question": "…", "top_k": 5}'}, 400)
        try:
            answer = await anyio.to_thread.run_sync(pipeline.ask, question, top_k, limiter=limiter)
        except Problem as error:
            return JSONResponse({"error": error.text(lang)}, 400)
        except (ValueError, TypeError) as error:
            return JSONResponse({"error": str(error)}, 400)
        except Exception:  # a short message for the caller, the whole story in the operator's log
            log.exception("answering %r failed", question)
            return JSONResponse({"error": TEXT[lang]["error"]}, 500)
        return JSONResponse(answer.to_dict())

    return APIRoute(ASK_ROUTE, endpoint, methods=["POST"])


def build_app(pipeline: Pipeline, settings: Settings, editable: bool = True) -> gr.Blocks:
    """The chat and knowledge-base tabs and the `/ask` API endpoint, all on the one shared pipeline.

    With `editable`, the knowledge-base tab also adds and removes files and rebuilds the index; questions are
    answered from the old index until the new one is switched in.
    """

    def ask(question: str, top_k: int = settings.top_k) -> dict[str, Any]:
        """Answer a question from the articles; returns Answer.to_dict() (question, answer, abstained, evidence, passages, citations, timings_ms)."""
        try:
            return pipeline.ask(question, top_k=int(top_k)).to_dict()
        except (ValueError, TypeError) as error:
            raise gr.Error(str(error)) from None

    def reply(question: str, top_k: float, lang: str, followup: bool = False) -> tuple[str, bool, list[str]]:
        """The rendered reply, or a rendered error (never a stack trace); whether it was answered; the quoted sentences."""
        try:
            answer = pipeline.ask(question, top_k=int(top_k))
            return render_answer(answer.to_dict(), lang, followup), True, [e.text for e in answer.evidence]
        except Problem as error:
            return render_error(error.text(lang)), False, []
        except (ValueError, TypeError) as error:
            return render_error(str(error)), False, []
        except Exception:  # shown to the user as a short message, logged in full for the operator
            log.exception("answering %r failed", question)
            return render_error(TEXT[lang]["error"]), False, []

    def respond(question: str, history: list[dict[str, Any]], top_k: float, request: gr.Request) -> Iterator[tuple[str, list[dict[str, Any]], Any]]:
        """Show the question at once, then the reply; a question that was refused goes back into the box to be edited.

        A follow-up (那农村呢？) is asked together with the previous question; the reply says how it was read.
        The quoted sentences are kept, to be marked when the knowledge-base tab shows their article.
        """
        previous = next((_message_text(m) for m in reversed(history) if m.get("role") == "user"), None)
        asked = with_context(question, previous)
        if question.strip():
            history = [*history, {"role": "user", "content": _e(question)}]
            yield "", history, gr.skip()
        lang = language_of(request)
        rendered, answered, quoted = reply(asked, top_k, lang, followup=asked != question)
        yield ("" if answered else question), [*history, {"role": "assistant", "content": rendered}], quoted

    def rate(event: gr.LikeData) -> None:
        """Record a 👍/👎 beside the index."""
        save_feedback(settings.index / FEEDBACK_FILE, event.value, bool(event.liked))

    def respond_example(event: gr.SelectData, history: list[dict[str, Any]], top_k: float, request: gr.Request) -> Iterator[tuple[str, list[dict[str, Any]], Any]]:
        """Ask a clicked example question."""
        yield from respond(event.value["text"], history, top_k, request)

    def articles_now(request: gr.Request) -> dict[str, list]:
        """The article table as the index is now (a background rebuild may have switched it)."""
        return article_table(pipeline.ensure_index(), language_of(request))

    def files_now() -> Any:
        """The removable files as the seed folder is now."""
        return gr.update(choices=documents(settings.seeds), value=None)

    def rebuilt(words: dict[str, str]) -> str:
        """Rebuild the index (only what changed is embedded); the message says what it holds now, or why it failed."""
        try:
            report = pipeline.build(progress=True)  # Gradio's progress bar follows the embedding's tqdm bar
        except Exception as error:  # the old index keeps answering; the user sees one line
            log.exception("rebuilding the index failed")
            return f"{ERROR_PREFIX}{error}"
        return words["rebuilt"].format(articles=report.articles, passages=report.passages, seconds=report.seconds)

    def add_files(files: list[str] | None, request: gr.Request, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
        """Check and add uploaded files (each bad one is named with its reason), then rebuild."""
        lang = language_of(request)
        words = TEXT[lang]
        if not files:
            return words["nothing"], gr.skip(), gr.skip(), gr.skip()
        added, rejected = [], []
        for path in files:
            try:
                added.append(add_document(settings.seeds, Path(path), Path(path).name, settings.max_upload_mb * 2**20))
            except Problem as error:
                rejected.append(error.text(lang))
            except OSError as error:
                rejected.append(f"{Path(path).name}: {error.strerror or error}")
        lines = [words["added"].format(names="、".join(added)), rebuilt(words)] if added else []
        lines += [words["rejected"].format(reasons="；".join(rejected))] if rejected else []
        return "\n\n".join(lines), articles_now(request), files_now(), None

    def remove_file(name: str | None, request: gr.Request, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
        """Remove one file, then rebuild."""
        lang = language_of(request)
        words = TEXT[lang]
        if not name:
            return words["nothing"], gr.skip(), gr.skip()
        try:
            remove_document(settings.seeds, name)
        except Problem as error:
            return f"{ERROR_PREFIX}{error.text(lang)}", gr.skip(), gr.skip()
        except OSError as error:
            return f"{ERROR_PREFIX}{name}: {error.strerror or error}", gr.skip(), gr.skip()
        return f"{words['removed'].format(name=name)}\n\n{rebuilt(words)}", articles_now(request), files_now()

    def open_cited(opened: str, quoted: list[str], request: gr.Request) -> tuple[Any, Any]:
        """An article an answer cites (its id, a newline, the click's time), opened in the knowledge-base tab."""
        index = pipeline.ensure_index()
        article = index.articles.get(opened.split("\n")[0])
        if article is None:  # the index changed since the answer
            return gr.skip(), gr.skip()
        return render_article(index, article, quoted or [], language_of(request)), gr.Tabs(selected=LIBRARY_TAB_ID)

    def open_article(event: gr.SelectData, quoted: list[str], request: gr.Request) -> str:
        """The clicked article in full."""
        row = event.row_value or []
        index = pipeline.ensure_index()
        article = find_article(index, row[0], row[2]) if len(row) > 2 else None
        return render_article(index, article, quoted or [], language_of(request)) if article else ""

    with gr.Blocks(title=TEXT[LANGUAGES[0]]["title"], analytics_enabled=False) as demo:
        gr.Markdown(I18N("heading"))
        quoted = gr.State([])
        open_box = gr.Textbox(visible="hidden", elem_id="open-article")
        with gr.Tabs() as tabs:
            with gr.Tab(I18N("tab_chat"), id=CHAT_TAB_ID, elem_id="tab-chat"):
                gr.Markdown(I18N("intro"))
                chatbot = gr.Chatbot(
                    show_label=False,
                    height=CHAT_HEIGHT,
                    examples=[{"text": q} for q in EXAMPLES],
                    group_consecutive_messages=False,  # an error after an answer gets its own bubble
                    buttons=["copy", "copy_all"],
                    placeholder=I18N("chat_placeholder"),
                    **CHATBOT_SAFETY,
                )
                with gr.Row():
                    question = gr.Textbox(
                        show_label=False,
                        placeholder=I18N("box_placeholder"),
                        scale=4,
                        submit_btn=True,
                        max_lines=4,
                        min_width=QUESTION_MIN_WIDTH,  # narrower screens put the slider below the box, not beside it
                        elem_id="question",
                    )
                    top_k = gr.Slider(MIN_PASSAGES, MAX_PASSAGES, value=settings.top_k, step=1, label=I18N("passages"), scale=1)
                question.submit(respond, [question, chatbot, top_k], [question, chatbot, quoted], api_visibility="private")
                chatbot.example_select(respond_example, [chatbot, top_k], [question, chatbot, quoted], api_visibility="private")
                chatbot.like(rate, None, None, api_visibility="private")
            with gr.Tab(I18N("tab_library"), id=LIBRARY_TAB_ID, elem_id="tab-library") as library_tab:
                status = gr.Markdown(elem_id="library-status")
                if editable:
                    with gr.Row():
                        uploads = gr.File(file_count="multiple", file_types=list(SUFFIXES), label=I18N("upload"), elem_id="upload", scale=3)
                        with gr.Column(scale=2):
                            add_button = gr.Button(I18N("add"), variant="primary", elem_id="add")
                            choice = gr.Dropdown(choices=documents(settings.seeds), value=None, label=I18N("remove_choice"), elem_id="remove-choice")
                            remove_button = gr.Button(I18N("remove"), variant="stop", elem_id="remove")
                else:
                    gr.Markdown(I18N("read_only"))
                table = gr.Dataframe(
                    value=article_table(pipeline.ensure_index()), interactive=False, wrap=True, show_search="search", elem_id="articles",
                )
                gr.Markdown(I18N("open_hint"))
                article = gr.HTML(elem_id="article")
                library_tab.select(articles_now, None, [table], api_visibility="private")
                demo.load(articles_now, None, [table], api_visibility="private")  # headers in the browser's language
                table.select(open_article, [quoted], [article], api_visibility="private")
                open_box.change(open_cited, [open_box, quoted], [article, tabs], api_visibility="private")
                if editable:
                    library_tab.select(files_now, None, [choice], api_visibility="private")
                    add_button.click(add_files, [uploads], [status, table, choice, uploads], api_visibility="private")
                    remove_button.click(remove_file, [choice], [status, table, choice], api_visibility="private")
        gr.api(ask, api_name=API_NAME)
    return demo


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; RAG_HOST / RAG_PORT give the defaults for --host / --port."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=os.environ.get("RAG_HOST") or DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=int(os.environ.get("RAG_PORT") or DEFAULT_PORT))
    add_settings_arguments(parser)
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--read-only", action="store_true", default=bool(os.environ.get("RAG_READ_ONLY")),
                        help="the page lists and shows the articles but cannot add or remove files (env RAG_READ_ONLY=1)")
    parser.add_argument("--users", default=os.environ.get("RAG_USERS_FILE"),
                        help="file of `name:hash` lines (python -m rag.auth NAME): who may log in to change the knowledge "
                             "base when the app listens beyond loopback (env RAG_USERS_FILE)")
    return parser.parse_args(argv)


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach the address."""
    try:
        return host in LOOPBACK_NAMES or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def access(args: argparse.Namespace) -> tuple[bool, Any]:
    """(whether the page may change the knowledge base, Gradio's auth): beyond loopback, changes need a login."""
    if args.read_only:
        return False, None
    if is_loopback(args.host) and not args.users:
        return True, None
    if not args.users:
        print(f"app: listening on {args.host} with no users file, so the knowledge base is read-only here. To let users "
              "change it after a login, give --users FILE (or RAG_USERS_FILE) with lines made by `python -m rag.auth NAME`.",
              file=sys.stderr)
        return False, None
    users = load_users(Path(args.users))
    return True, lambda name, password: verify(users, name, password)


def main(argv: Sequence[str] | None = None) -> None:
    """Build the index if needed, load the pipeline once, serve the chat."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    settings = settings_from(args)
    pipeline = Pipeline(settings)
    try:
        editable, auth = access(args)
        pipeline.ensure_index(progress=True)
        pipeline.ask(EXAMPLES[0])  # load the model now, once, rather than in the first user's request
    except (ModelError, IndexUnavailable, OSError, ValueError) as error:  # one clear line, not a traceback
        sys.exit(f"app: cannot start: {error}")
    demo = build_app(pipeline, settings, editable)
    upload_bytes = settings.max_upload_mb * 2**20 + UPLOAD_FORM_BYTES if editable else 0
    demo.queue(default_concurrency_limit=settings.concurrency)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        auth=auth,
        max_file_size=settings.max_upload_mb * 2**20,
        theme=gr.themes.Default(font=list(FONTS)),
        css=CSS,
        head=COPY_AS_PLAIN_TEXT + OPEN_CITED_ARTICLE,
        i18n=I18N,
        app_kwargs={"middleware": [Middleware(BodyLimit, max_bytes=MAX_REQUEST_BYTES, max_upload_bytes=upload_bytes)],
                    "routes": [ask_route(pipeline, settings, auth)]},
    )


if __name__ == "__main__":
    main()
