"""app.py for real: the chat in headless Chromium against a running app, the /ask API, and escaping of document text.

Needs Debian's chromium (`apt-get install -y chromium fonts-noto-cjk`); set CHROMIUM_PATH if it lives elsewhere.
UPDATE_SCREENSHOT=1 also saves docs/screenshot.png (chat), docs/screenshot-library.png (knowledge base) and
docs/screenshot-phone.png from the tests that show them.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import app
from rag.auth import hash_password
from rag.config import PROJECT_ROOT, Settings

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 1100}
PHONE = {"width": 390, "height": 844}
LOCALE = "zh-CN"  # the users read Chinese; test_the_page_speaks_one_language_the_browsers tries English too
MIN_CONTRAST = 4.5  # WCAG AA for body text
CLIPBOARD_WAIT_MS = 500
LIKE_LABEL = "赞"  # Gradio's own label of the 👍 button in a Chinese browser
FEEDBACK_TIMEOUT_S = 10
STARTUP_TIMEOUT_S = 900  # the first start builds index/ from seeds/
ANSWER_TIMEOUT_MS = 120_000
SCREENSHOT = PROJECT_ROOT / "docs" / "screenshot.png"
LIBRARY_SCREENSHOT = PROJECT_ROOT / "docs" / "screenshot-library.png"
PHONE_SCREENSHOT = PROJECT_ROOT / "docs" / "screenshot-phone.png"
DOCUMENTS = PROJECT_ROOT / "tests" / "fixtures" / "documents"
REBUILD_TIMEOUT_MS = 300_000
CHAT_TAB, LIBRARY_TAB = app.TEXT["zh"]["tab_chat"], app.TEXT["zh"]["tab_library"]
GOV_FILE = "gov_page.html"
GOV_TITLE = "关于做好2025年城镇老旧小区改造工作的通知"
GOV_QUESTION = "老旧小区加装电梯，市级财政补助多少钱？"
GOV_ANSWER = "市级财政按每部15万元的标准给予补助"
SCREENSHOT_MARGIN_PX = 40

CHINESE_QUESTION = "如何释放被抑制的消费需求？"
ENGLISH_QUESTION = "How can blockchain technology help build a fair and trustworthy business environment?"
ENGLISH_SOURCE = "004_57414710c54d5ef4.txt"
UNANSWERABLE = "美国联邦储备系统的基准利率是多少？"
CONSUMPTION_TITLE = "释放消费潜力 扩大居民消费"
CONSUMPTION_FILE = "000_d5601f0ce50051b5.txt"
MULTI_ARTICLE_QUESTION = "智慧城市建设与消费升级"  # retrieves passages of several articles of CONSUMPTION_FILE

SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src=x onerror="window.__pwned=1">'
MARKDOWN = "**粗体** # 标题"
EVIL_ARTICLE = f"""

城市口袋公园建设<b>指南</b>

□张三{SCRIPT}

城市口袋公园是指面积较小、分布在街区中的开放绿地。{SCRIPT}

口袋公园的建设标准包括绿地面积和树木数量{IMG}，由住房和城乡建设部门负责验收。

# 标题 **粗体** 口袋公园应当方便居民步行到达。

{MARKDOWN} 口袋公园的日常养护由街道办事处负责。
"""
EVIL_QUESTION = "口袋公园的建设标准包括什么？"


# ---------------------------------------------------------------- helpers


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(log_path: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """`python app.py ARGS` on a free port; returns once it answers HTTP (fails with its log if it dies)."""
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    env.pop("GRADIO_SHARE", None)
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "app.py"), "--port", str(port), *args],
        cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"app.py exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return proc, url
        except OSError:
            time.sleep(1)
    stop_app(proc)
    pytest.fail(f"app.py did not answer on {url} within {STARTUP_TIMEOUT_S}s:\n{log_path.read_text()[-4000:]}")


def stop_app(proc: subprocess.Popen) -> None:
    """Terminate the app process we started."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def open_chat(browser, url: str):
    """A fresh page on the chat, ready to type into."""
    page = browser.new_page(viewport=VIEWPORT, locale=LOCALE)
    page.goto(url)
    page.wait_for_selector("#question textarea")
    return page


def ask_in_browser(page, question: str):
    """Type a question, press Enter, and return the new reply once it is shown."""
    before = page.locator(".rag-reply").count()
    box = page.locator("#question textarea")
    box.fill(question)
    box.press("Enter")
    page.wait_for_function("n => document.querySelectorAll('.rag-reply').length > n", arg=before, timeout=ANSWER_TIMEOUT_MS)
    return page.locator(".rag-reply").nth(before)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by Playwright."""
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install it with `apt-get install -y chromium fonts-noto-cjk` (or set CHROMIUM_PATH).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[str]:
    """The real app over seeds/ and index/ (index built first if missing), read-only, shared by this module's tests."""
    proc, url = start_app(
        tmp_path_factory.mktemp("app") / "app.log",
        "--seeds", str(PROJECT_ROOT / "seeds"), "--index", str(PROJECT_ROOT / "index"), "--read-only",
    )
    yield url
    stop_app(proc)


@pytest.fixture()
def page(browser, served):
    """A fresh chat page on the shared app."""
    page = open_chat(browser, served)
    yield page
    page.close()


# ---------------------------------------------------------------- rendering, no browser


def evil_answer(abstained: bool = False) -> dict:
    """An Answer.to_dict() whose every document-derived string carries markup."""
    sentence = f"口袋公园{SCRIPT}很小{IMG}。"
    article = {"title": f"<b>标题</b>{SCRIPT}", "authors": [f"<i>张三</i>{IMG}"], "source": f"x{IMG}.txt"}
    passage = {
        "id": "p<1>", "text": f"前文 {MARKDOWN}\n{sentence}后文", "score": 0.5, "dense_score": 0.8,
        "keyword_score": 3.0, "section": f"<h1>节</h1>{SCRIPT}", "article": article,
    }
    evidence = [] if abstained else [{"text": sentence, "score": 1.0, "passage_id": "p<1>", "article_title": article["title"], "source": article["source"]}]
    return {
        "question": "q", "answer": "" if abstained else sentence, "abstained": abstained, "evidence": evidence,
        "passages": [passage], "citations": [] if abstained else [article], "timings_ms": {"retrieve": 1.0, "answer": 1.0, "total": 2.0},
    }


@pytest.mark.parametrize("abstained", [False, True])
def test_render_answer_escapes_all_document_text(abstained: bool) -> None:
    rendered = app.render_answer(evil_answer(abstained))
    for raw in ("<script", "<img", "<b>", "<i>", "<h1>"):
        assert raw not in rendered
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in rendered
    assert "&lt;img src=x onerror=&quot;window.__pwned=1&quot;&gt;" in rendered
    assert MARKDOWN in rendered  # left as literal text; the chatbot renders no Markdown
    assert "<details" in rendered and "x&lt;img" in rendered  # passage view and escaped file name
    if abstained:
        assert app.TEXT["zh"]["abstain"] in rendered and app.TEXT["zh"]["related"] in rendered
        assert "<mark>" not in rendered
    else:
        assert "<mark>口袋公园&lt;script&gt;window.__pwned=1&lt;/script&gt;很小&lt;img src=x onerror=&quot;window.__pwned=1&quot;&gt;。</mark>后文" in rendered
        assert app.TEXT["zh"]["sources"] in rendered and "&lt;i&gt;张三&lt;/i&gt;" in rendered


def test_references_follow_gbt_7714() -> None:
    web = {"title": "数字政府建设", "authors": ["甲", "乙", "丙", "丁"], "source": "x.txt", "info_source": "某市政府网", "published": "2020-08-01"}
    assert app.reference(web) == "甲, 乙, 丙, 等. 数字政府建设[EB/OL]. 某市政府网, 2020-08-01."
    assert app.reference({"title": "无名文章", "authors": [], "source": "y.txt"}) == "无名文章[Z]. y.txt."
    pdf = {"title": "补齐农村冷链物流短板", "authors": ["王晓明", "李静"], "source": "two_column.pdf", "pages": [1, 2]}
    assert app.reference(pdf) == "王晓明, 李静. 补齐农村冷链物流短板[Z]. two_column.pdf: 1-2."


def test_pdf_pages_are_shown_beside_the_file() -> None:
    answer = evil_answer()
    answer["citations"][0] = {**answer["citations"][0], "pages": [2]}
    answer["passages"][0] = {**answer["passages"][0], "pages": [2, 3]}
    rendered = app.render_answer(answer)
    assert "</code>, p. 2</span>" in rendered and "· pp. 2–3" in rendered


def test_a_stale_index_notice_is_shown_escaped() -> None:
    rendered = app.render_answer({**evil_answer(), "notice": "The index is stale <b>!</b>"})
    assert f'<p class="rag-notice" title="The index is stale &lt;b&gt;!&lt;/b&gt;">{app.TEXT["zh"]["stale"]}</p>' in rendered
    assert app.TEXT["en"]["stale"] in app.render_answer({**evil_answer(), "notice": "x"}, "en")
    assert "rag-notice" not in app.render_answer(evil_answer())


def test_highlight_marks_every_occurrence_and_merges_overlaps() -> None:
    assert app.highlight("a<b>a", ["a"]) == "<mark>a</mark>&lt;b&gt;<mark>a</mark>"
    assert app.highlight("mark mark", ["mark", "k m"]) == "<mark>mark mark</mark>"
    assert app.highlight("one\ntwo", ["", "zzz"]) == "one<br>two"


def test_command_line_defaults_and_environment(monkeypatch) -> None:
    monkeypatch.delenv("RAG_HOST", raising=False)
    monkeypatch.delenv("RAG_PORT", raising=False)
    args = app.parse_args([])
    assert (args.host, args.port, args.share) == ("127.0.0.1", 7860, False)
    monkeypatch.setenv("RAG_HOST", "0.0.0.0")
    monkeypatch.setenv("RAG_PORT", "9000")
    assert (app.parse_args([]).host, app.parse_args([]).port) == ("0.0.0.0", 9000)
    assert app.parse_args(["--port", "1234", "--share"]).port == 1234


def test_request_bodies_over_the_limit_are_refused() -> None:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    async def size(request):
        return PlainTextResponse(str(len(await request.body())))

    client = TestClient(Starlette(routes=[Route("/", size, methods=["POST"])], middleware=[Middleware(app.BodyLimit, max_bytes=1000)]))
    assert client.post("/", content=b"x" * 1000).text == "1000"
    assert client.post("/", content=b"x" * 1001).status_code == 413  # declared too long: refused unread
    assert client.post("/", content=(b"x" * 300 for _ in range(5))).status_code == 413  # chunked: refused once past it


# ---------------------------------------------------------------- the real app in the browser


def test_chinese_question_cites_the_consumption_article(page) -> None:
    reply = ask_in_browser(page, CHINESE_QUESTION)
    sentences = reply.locator(".rag-sentence")
    assert sentences.count() >= 1 and sentences.first.inner_text().strip()
    sources = reply.locator(".rag-sources").first.inner_text()
    assert CONSUMPTION_TITLE in sources and CONSUMPTION_FILE in sources
    first = reply.locator("details.rag-details").first
    first.locator("summary").click()
    assert first.locator("mark").count() >= 1 and first.locator(".rag-score").is_visible()
    if os.environ.get("UPDATE_SCREENSHOT"):
        box = page.locator("#question").bounding_box()
        page.screenshot(path=str(SCREENSHOT), clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": box["y"] + box["height"] + SCREENSHOT_MARGIN_PX})


def test_a_cited_article_opens_in_the_knowledge_base_with_the_quote_marked(page, pipeline) -> None:
    reply = ask_in_browser(page, CHINESE_QUESTION)
    quoted = reply.locator(".rag-sentence").first.inner_text().strip()
    reply.locator(".rag-sources").first.locator(".rag-open").first.click()
    page.locator("#article mark").first.wait_for()
    assert page.locator("#tab-library").is_visible() and not page.locator("#tab-chat").is_visible()
    assert CONSUMPTION_TITLE in page.locator("#article h2").inner_text()
    assert page.locator("#article mark").first.inner_text() in quoted
    other = next(a.title for a in pipeline.ensure_index().articles.values() if a.title != CONSUMPTION_TITLE)
    visible_cell(page, other).click()
    page.locator("#article h2", has_text=other).wait_for()
    page.get_by_role("tab", name=CHAT_TAB).click()
    reply.locator(".rag-sources").first.locator(".rag-open").first.click()  # the same article again
    page.locator("#article h2", has_text=CONSUMPTION_TITLE).wait_for()
    page.get_by_role("tab", name=CHAT_TAB).click()


def test_passages_are_listed_under_their_own_article(page, pipeline) -> None:
    """File 000 holds three articles: each passage must sit under the article it belongs to, not just its file."""
    reply = ask_in_browser(page, MULTI_ARTICLE_QUESTION)
    page.evaluate("document.querySelectorAll('.rag-reply details').forEach(d => d.open = true)")
    titles_seen, shown = set(), 0
    for group in reply.locator(".rag-sources > li").all():
        title = group.locator(".rag-article-title").inner_text().strip()
        ids = [code.inner_text() for code in group.locator(".rag-score code").all()]
        for passage_id in ids:
            article = pipeline.ensure_index().articles[passage_id.split(":")[0]]
            assert article.title == title, f"passage {passage_id} of {article.title!r} shown under {title!r}"
        titles_seen.add(title)
        shown += len(ids)
    assert shown == Settings().top_k and len(titles_seen) >= 2  # the question does reach two articles of file 000


def _luminance(css_color: str) -> float:
    """WCAG relative luminance of an `rgb(...)`/`rgba(...)` computed colour."""
    r, g, b = (int(float(v)) / 255 for v in css_color[css_color.index("(") + 1 : css_color.index(")")].split(",")[:3])
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_highlighted_sentences_are_readable_in_both_themes(browser, served, theme) -> None:
    page = browser.new_page(viewport=VIEWPORT, locale=LOCALE, color_scheme=theme)
    page.goto(f"{served}?__theme={theme}")
    page.wait_for_selector("#question textarea")
    reply = ask_in_browser(page, CHINESE_QUESTION)
    page.evaluate("document.querySelectorAll('.rag-reply details').forEach(d => d.open = true)")
    mark = reply.locator("mark").first
    colour, background = mark.evaluate("m => [getComputedStyle(m).color, getComputedStyle(m).backgroundColor]")
    light, dark = sorted((_luminance(colour), _luminance(background)), reverse=True)
    assert (light + 0.05) / (dark + 0.05) >= MIN_CONTRAST, f"{theme}: {colour} on {background}"
    page.close()


def test_phone_layout_shows_a_wide_question_box_on_the_first_screen(browser, served) -> None:
    page = browser.new_page(viewport=PHONE, locale=LOCALE, is_mobile=True, has_touch=True)
    page.goto(served)
    box = page.locator("#question textarea").bounding_box()
    assert box["y"] + box["height"] <= PHONE["height"], f"question box ends at {box['y'] + box['height']:.0f}px"
    assert box["width"] >= PHONE["width"] * 0.6, f"question box only {box['width']:.0f}px wide"
    page.close()


def test_copy_gives_plain_text_with_references(browser, served) -> None:
    context = browser.new_context(viewport=VIEWPORT, locale=LOCALE, permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.goto(served)
    page.wait_for_selector("#question textarea")
    ask_in_browser(page, CHINESE_QUESTION)
    page.get_by_label("Copy message").last.click()
    page.wait_for_timeout(CLIPBOARD_WAIT_MS)
    copied = page.evaluate("navigator.clipboard.readText()")
    assert "切实把被抑制、被冻结的消费释放出来" in copied and "<" not in copied
    assert f"[1] 田学斌. {CONSUMPTION_TITLE}[Z]. {CONSUMPTION_FILE}." in copied
    page.get_by_label("Copy conversation").click()
    page.wait_for_timeout(CLIPBOARD_WAIT_MS)
    everything = page.evaluate("navigator.clipboard.readText()")
    assert CHINESE_QUESTION in everything and "参考文献" in everything and "rag-" not in everything
    context.close()


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
def test_the_page_speaks_one_language_the_browsers(browser, served, locale) -> None:
    lang, other = ("en", "zh") if locale.startswith("en") else ("zh", "en")
    context = browser.new_context(viewport=VIEWPORT, locale=locale)
    page = context.new_page()
    page.goto(served)
    page.wait_for_selector("#question textarea")
    assert page.locator("#question textarea").get_attribute("placeholder") == app.TEXT[lang]["box_placeholder"]
    reply = ask_in_browser(page, CHINESE_QUESTION)
    body = page.inner_text("body")
    assert app.TEXT[lang]["sources"] in reply.inner_text() and app.TEXT[lang]["title"] in body
    for key in ("sources", "title", "passages"):
        assert app.TEXT[other][key] not in body, f"{locale}: {app.TEXT[other][key]!r} shown"
    context.close()


def test_a_followup_is_read_with_the_previous_question(page) -> None:
    ask_in_browser(page, CHINESE_QUESTION)
    reply = ask_in_browser(page, "具体有哪些措施？")
    assert reply.locator(".rag-asked").inner_text() == app.TEXT["zh"]["asked"].format(q=f"{CHINESE_QUESTION} 具体有哪些措施？")
    assert CONSUMPTION_TITLE in reply.inner_text()


def test_english_question_is_answered_from_the_articles(page) -> None:
    reply = ask_in_browser(page, ENGLISH_QUESTION)
    assert reply.locator(".rag-error").count() == 0
    assert reply.locator("details.rag-details").count() == Settings().top_k
    assert reply.locator(".rag-sentence").count() >= 1
    assert ENGLISH_SOURCE in reply.locator(".rag-sources").first.inner_text()


def test_unanswerable_question_abstains_and_lists_related_passages(page) -> None:
    reply = ask_in_browser(page, UNANSWERABLE)
    assert reply.locator(".rag-abstain").count() == 1, f"expected an abstention, got: {reply.inner_text()[:300]}"
    assert reply.locator(".rag-abstain").inner_text() == app.TEXT["zh"]["abstain"]
    assert reply.locator(".rag-sentence").count() == 0
    assert app.TEXT["zh"]["related"] in reply.inner_text() and reply.locator("details.rag-details").count() >= 1


def test_example_question_and_passage_slider(page) -> None:
    page.locator('input[type="range"]').fill("2")
    before = page.locator(".rag-reply").count()
    page.get_by_text(app.EXAMPLES[1]).click()
    page.wait_for_function("n => document.querySelectorAll('.rag-reply').length > n", arg=before, timeout=ANSWER_TIMEOUT_MS)
    reply = page.locator(".rag-reply").nth(before)
    assert reply.locator("details.rag-details").count() == 2
    assert app.EXAMPLES[1] in page.inner_text("body")  # now as the user's message (the example boxes are gone)


def test_bad_input_shows_a_readable_error_in_the_chat(page) -> None:
    empty = ask_in_browser(page, "   ")
    assert "问题是空的" in empty.locator(".rag-error").inner_text()  # in the page's language
    too_long = ask_in_browser(page, "消费" * 400)
    assert "超过了 500 个字符的上限" in too_long.locator(".rag-error").inner_text()
    assert page.locator("#question textarea").input_value() == "消费" * 400  # given back to be shortened, not lost
    assert "Traceback" not in page.inner_text("body")


def test_ask_api_returns_the_answer_json(served: str) -> None:
    from gradio_client import Client

    client = Client(served, verbose=False)
    result = client.predict(CHINESE_QUESTION, 3, api_name="/" + app.API_NAME)
    assert set(result) >= {"question", "answer", "abstained", "evidence", "passages", "citations", "timings_ms"}
    assert result["abstained"] is False and result["answer"]
    assert len(result["passages"]) == 3
    assert CONSUMPTION_FILE in [c["source"] for c in result["citations"]]
    assert all(e["text"] in result["answer"] for e in result["evidence"])
    with pytest.raises(Exception, match="empty"):
        client.predict("", 5, api_name="/" + app.API_NAME)


def test_plain_ask_route_answers_json_and_refuses_bad_requests(served: str, pipeline) -> None:
    import httpx

    url = served.rstrip("/") + app.ASK_ROUTE
    reply = httpx.post(url, json={"question": CHINESE_QUESTION, "top_k": 3}, timeout=60)
    assert reply.status_code == 200
    result = reply.json()
    expected = pipeline.ask(CHINESE_QUESTION, 3)
    assert (result["answer"], result["abstained"]) == (expected.answer, False)
    assert len(result["passages"]) == 3 and CONSUMPTION_FILE in [c["source"] for c in result["citations"]]
    empty = httpx.post(url, json={"question": "  "}, headers={"Accept-Language": "zh-CN"}, timeout=60)
    assert empty.status_code == 400 and "问题是空的" in empty.json()["error"]
    for bad in ({"top_k": 3}, {"question": 5}, {"question": "x", "top_k": "many"}, [CHINESE_QUESTION]):
        assert httpx.post(url, json=bad, timeout=60).status_code == 400
    assert httpx.post(url, content=b"\xff not json", timeout=60).status_code == 400
    out_of_range = httpx.post(url, json={"question": CHINESE_QUESTION, "top_k": 0}, timeout=60)
    assert out_of_range.status_code == 400 and "top_k" in out_of_range.json()["error"]


def test_plain_ask_route_asks_for_a_login_when_the_app_has_users(pipeline) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    users = {"ana": hash_password("s3cret", iterations=1000)}
    route = app.ask_route(pipeline, pipeline.settings, lambda name, password: app.verify(users, name, password))
    client = TestClient(FastAPI(routes=[route]))
    body = {"question": CHINESE_QUESTION}
    refused = client.post(app.ASK_ROUTE, json=body)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
    assert client.post(app.ASK_ROUTE, json=body, auth=("ana", "wrong")).status_code == 401
    assert client.post(app.ASK_ROUTE, json=body, auth=("bob", "s3cret")).status_code == 401
    for _ in range(2):  # the second time from the checked-credentials cache
        answered = client.post(app.ASK_ROUTE, json=body, auth=("ana", "s3cret"))
        assert answered.status_code == 200 and answered.json()["answer"]


# ---------------------------------------------------------------- feedback and document markup, each in its own app


def test_the_app_refuses_a_huge_request_body(served: str) -> None:
    address = urllib.parse.urlsplit(served)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    connection.putrequest("POST", f"/gradio_api/call/{app.API_NAME}")  # the body is announced, never sent: refused unread
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(app.MAX_REQUEST_BYTES + 1))
    connection.endheaders()
    assert connection.getresponse().status == 413
    connection.close()


def test_thumbs_up_is_saved_beside_the_index(browser, tmp_path: Path) -> None:
    shutil.copytree(PROJECT_ROOT / "index", tmp_path / "index")
    proc, url = start_app(tmp_path / "app.log", "--index", str(tmp_path / "index"))
    try:
        page = open_chat(browser, url)
        ask_in_browser(page, CHINESE_QUESTION)
        page.get_by_label(LIKE_LABEL, exact=True).last.click()
        feedback = tmp_path / "index" / app.FEEDBACK_FILE
        deadline = time.monotonic() + FEEDBACK_TIMEOUT_S
        while not (feedback.exists() and feedback.read_text(encoding="utf-8").endswith("\n")) and time.monotonic() < deadline:
            time.sleep(0.2)  # the app creates the file, then writes its line: wait for a whole line
        record = json.loads(feedback.read_text(encoding="utf-8").splitlines()[-1])
        assert record["liked"] is True and record["question"] == CHINESE_QUESTION
        assert "切实把被抑制、被冻结的消费释放出来" in record["answer"] and len(record["passage_ids"]) == Settings().top_k
        page.close()
    finally:
        stop_app(proc)
    assert not app.save_feedback(tmp_path / "f.jsonl", app.render_error("出错了"), liked=False)  # an error is not rated


# ---------------------------------------------------------------- a small editable app: markup, the knowledge base


@pytest.fixture(scope="module")
def small_app(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """An editable app over a folder holding one article full of markup (and what the tests add)."""
    root = tmp_path_factory.mktemp("small")
    seeds = root / "seeds"
    seeds.mkdir()
    (seeds / "000_evil.txt").write_text(EVIL_ARTICLE, encoding="utf-8")
    proc, url = start_app(root / "app.log", "--seeds", str(seeds), "--index", str(root / "index"))
    yield url, seeds
    stop_app(proc)


def test_document_markup_is_shown_literally(browser, small_app) -> None:
    page = open_chat(browser, small_app[0])
    reply = ask_in_browser(page, EVIL_QUESTION)
    page.evaluate("document.querySelectorAll('.rag-reply details').forEach(d => d.open = true)")
    text = reply.inner_text()
    assert SCRIPT in text and IMG in text and MARKDOWN in text and "标题 **粗体**" in text  # the corpus drops a leading "# "
    assert "城市口袋公园建设<b>指南</b>" in text
    open_library(page)
    visible_cell(page, "城市口袋公园建设<b>指南</b>").click()
    article = page.locator("#article .rag-article")
    article.wait_for()
    assert SCRIPT in article.inner_text() and article.locator("mark").count() == 1  # the quoted sentence, marked
    assert page.evaluate("window.__pwned") is None
    assert page.locator('img[src="x"]').count() == 0
    assert reply.locator("script, img, b, strong, h1, em").count() == 0
    assert article.locator("script, img, b, strong, em").count() == 0
    page.close()


def open_library(page) -> None:
    """Switch to the knowledge-base tab and wait for its table."""
    page.get_by_role("tab", name=LIBRARY_TAB).click()
    page.wait_for_selector("#articles")


def visible_cell(page, text: str):
    """The shown table cell with this exact text (the table also keeps hidden copies for measuring)."""
    return page.locator("#articles").get_by_text(text, exact=True).locator("visible=true").first


def library_status(page, words: str) -> str:
    """Wait until the knowledge-base status line says `words`, and return it."""
    page.wait_for_function("w => document.querySelector('#library-status').innerText.includes(w)", arg=words, timeout=REBUILD_TIMEOUT_MS)
    return page.locator("#library-status").inner_text()


def test_knowledge_base_adds_a_file_answers_from_it_shows_it_and_removes_it(browser, small_app) -> None:
    url, seeds = small_app
    page = open_chat(browser, url)
    open_library(page)
    page.locator("#upload input[type=file]").set_input_files([DOCUMENTS / GOV_FILE, DOCUMENTS / "encrypted.pdf"])
    page.locator("#add").click()
    status = library_status(page, "索引已更新")
    assert f"已添加：{GOV_FILE}" in status and "未添加：encrypted.pdf：文件已加密" in status
    assert sorted(p.name for p in seeds.iterdir()) == ["000_evil.txt", GOV_FILE]  # the bad file and staging are gone
    assert visible_cell(page, GOV_TITLE).is_visible()

    page.get_by_role("tab", name=CHAT_TAB).click()
    reply = ask_in_browser(page, GOV_QUESTION)
    assert GOV_ANSWER in reply.locator(".rag-sentence").first.inner_text() and GOV_FILE in reply.inner_text()

    open_library(page)
    visible_cell(page, GOV_TITLE).click()
    page.locator("#article mark").first.wait_for()
    assert GOV_ANSWER in page.locator("#article mark").first.inner_text()  # the quoted sentence, marked in the article
    assert "临江市住房和城乡建设局" in page.locator("#article .rag-meta").first.inner_text()
    if os.environ.get("UPDATE_SCREENSHOT"):
        page.screenshot(path=str(LIBRARY_SCREENSHOT), full_page=True)

    page.locator("#remove-choice input").click()
    page.get_by_role("option", name=GOV_FILE).click()
    page.locator("#remove").click()
    assert f"已移除：{GOV_FILE}" in library_status(page, "已移除")
    assert not (seeds / GOV_FILE).exists()
    assert page.locator("#articles").get_by_text(GOV_TITLE, exact=True).locator("visible=true").count() == 0
    page.get_by_role("tab", name=CHAT_TAB).click()
    assert GOV_FILE not in ask_in_browser(page, GOV_QUESTION).inner_text()
    page.close()


def test_knowledge_base_on_a_phone_in_dark_mode(browser, small_app) -> None:
    page = browser.new_page(viewport=PHONE, locale=LOCALE, is_mobile=True, has_touch=True, color_scheme="dark")
    page.goto(f"{small_app[0]}?__theme=dark")
    page.wait_for_selector("#question textarea")
    ask_in_browser(page, EVIL_QUESTION)
    open_library(page)
    visible_cell(page, "城市口袋公园建设<b>指南</b>").click()
    mark = page.locator("#article mark").first
    mark.wait_for()
    colour, background = mark.evaluate("m => [getComputedStyle(m).color, getComputedStyle(m).backgroundColor]")
    light, dark = sorted((_luminance(colour), _luminance(background)), reverse=True)
    assert (light + 0.05) / (dark + 0.05) >= MIN_CONTRAST, f"{colour} on {background}"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # nothing wider than the phone
    upload = page.locator("#upload").bounding_box()
    assert upload["x"] >= 0 and upload["x"] + upload["width"] <= PHONE["width"]
    if os.environ.get("UPDATE_SCREENSHOT"):
        page.screenshot(path=str(PHONE_SCREENSHOT))
    page.close()


def test_a_read_only_app_shows_the_knowledge_base_without_changing_it(page) -> None:
    open_library(page)
    assert page.get_by_text(app.TEXT["zh"]["read_only"]).is_visible()
    assert page.locator("#upload, #add, #remove").count() == 0
    page.locator("#articles input").first.fill(CONSUMPTION_TITLE)
    visible_cell(page, CONSUMPTION_TITLE).click()
    assert page.locator("#article h2").inner_text() == CONSUMPTION_TITLE


def test_access_beyond_loopback_needs_a_users_file(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text(f"ana:{hash_password('s3cret', iterations=1000)}\n", encoding="utf-8")
    assert app.access(app.parse_args([])) == (True, None)  # loopback: the local user may change it
    assert app.access(app.parse_args(["--read-only"])) == (False, None)
    assert app.access(app.parse_args(["--host", "0.0.0.0"])) == (False, None)  # no users: read-only, and it says so
    editable, auth = app.access(app.parse_args(["--host", "0.0.0.0", "--users", str(users)]))
    assert editable and auth("ana", "s3cret") and not auth("ana", "wrong") and not auth("bob", "s3cret")
