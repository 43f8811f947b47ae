"""Words for keyword search and overlap: jieba tokens and character bigrams, Traditional and Simplified alike."""
from __future__ import annotations

import logging
import re
import unicodedata
from functools import lru_cache

import jieba
import opencc

from rag.clean import HAN_CHAR

jieba.setLogLevel(logging.WARNING)

# Function words and question words that carry no topic; punctuation is removed separately.
STOPWORDS = frozenset(
    """
    的 了 是 在 和 与 及 或 等 也 都 而 对 把 被 从 以 为 之 其 这 那 这些 那些 该 此 中 上 下 里
    着 过 要 会 能 可 可以 应 应该 应当 需要 有 没有 就 还 又 并 且 但 则 即 将 让 使 给 向 于 由
    一 一个 一些 各 每 个 我们 你们 他们 我 你 他 她 它 本 吗 呢 吧 啊 么
    什么 如何 怎么 怎样 怎么样 哪些 哪个 哪里 哪儿 哪 谁 多少 几 为什么 为何 是否 是不是 何 何时
    the a an of to in on for and or is are was were be been what which who whom how why when where
    does do did can could should would will with by from as at this that these those it its about
    """.split()
)

_PUNCT_OR_SPACE = re.compile(r"^[\W_]+$", re.UNICODE)
NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


@lru_cache(maxsize=1)
def _to_simplified() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def fold(text: str) -> str:
    """The text as words are compared: NFKC, lower case, Traditional characters as Simplified (a few µs)."""
    return _to_simplified().convert(unicodedata.normalize("NFKC", text).lower())


def tokens(text: str) -> list[str]:
    """Search tokens of a text: jieba's search-mode words of the folded text, without punctuation or stopwords."""
    text = fold(text)
    return [w for w in jieba.lcut_for_search(text) if not _PUNCT_OR_SPACE.match(w) and w not in STOPWORDS]


def bigrams(text: str) -> set[str]:
    """Character bigrams of a text, lower-cased, punctuation and spaces removed: cheap overlap for any language."""
    chars = NON_WORD.sub("", fold(text))
    return {chars[i : i + 2] for i in range(len(chars) - 1)} or ({chars} if chars else set())


def is_chinese(text: str) -> bool:
    """Whether a text contains Chinese characters (else it can share no words with the articles)."""
    return bool(HAN_CHAR.search(text))
