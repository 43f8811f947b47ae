"""Words for keyword search and overlap: jieba tokens and character bigrams, Traditional and Simplified alike."""
from __future__ import annotations

import logging
import multiprocessing
import os
import re
import sys
import unicodedata
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from typing import Iterable

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

# A corpus of this many texts is tokenised by worker processes (jieba takes about 2-5 ms a passage; starting the
# workers about 2 s), in chunks of CHUNK_TEXTS.
PARALLEL_MIN_TEXTS = 20_000
CHUNK_TEXTS = 2_000

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


def _chunk_tokens(texts: list[str]) -> list[list[str]]:
    return [tokens(t) for t in texts]


def _interned(chunks: Iterable[list[list[str]]]) -> list[list[str]]:
    """The chunks' token lists as one list, each word one interned string: a million passages' lists then hold pointers."""
    return [[sys.intern(w) for w in words] for chunk in chunks for words in chunk]


def corpus_tokens(texts: list[str], processes: int = 0, parallel_min: int = PARALLEL_MIN_TEXTS) -> list[list[str]]:
    """Each text's tokens; `processes` workers (0: one a core) share a corpus of parallel_min texts or more."""
    processes = processes or os.cpu_count() or 1
    if processes > 1 and len(texts) >= parallel_min:
        # spawn, not fork: a build may run beside the app's threads, whose held locks a forked child would inherit
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            return _interned(pool.map(_chunk_tokens, [texts[i : i + CHUNK_TEXTS] for i in range(0, len(texts), CHUNK_TEXTS)]))
    return _interned([_chunk_tokens(texts)])


def bigrams(text: str) -> set[str]:
    """Character bigrams of a text, lower-cased, punctuation and spaces removed: cheap overlap for any language."""
    return folded_bigrams(fold(text))


def folded_bigrams(folded: str) -> set[str]:
    """bigrams() of a text already folded (fold() costs a few µs a sentence; the reader folds each sentence once)."""
    chars = NON_WORD.sub("", folded)
    return {chars[i : i + 2] for i in range(len(chars) - 1)} or ({chars} if chars else set())


def is_chinese(text: str) -> bool:
    """Whether a text contains Chinese characters (else it can share no words with the articles)."""
    return bool(HAN_CHAR.search(text))
