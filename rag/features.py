"""Reader features: how well each sentence of the retrieved passages answers the question, from cheap signals only.

No second model call: the sentence vectors are in the index, the question vector is the one retrieval used. The
lexical signals work on folded text (rag.keywords.fold), so Traditional and Simplified characters compare equal.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from jieba import posseg

from rag.index import Index
from rag.keywords import NON_WORD, bigrams, fold, folded_bigrams, is_chinese, tokens
from rag.records import PARSED_PASSAGES
from rag.retrieve import Hit, idf
from rag.translate import chinese_phrases

MAX_ENTITY_TITLE_CHARS = 12  # a title this short names an entity; a longer one is a headline and is not subtracted

# What kind of answer a question asks for, and whether a sentence holds one. Not a number: 哪几种 (which ones),
# 好几个/这几年 (several, these years), 多大程度 (to what degree); not a date: "when" inside an English question.
NUMBER, DATE = "number", "date"
_QUESTION_TYPE = (
    (DATE, re.compile(r"何时|什么时候|什么时间|哪[一几]?年|哪个年份|哪一?天|哪一?日|何年|几月|几号|几时|^\W*when\b|"
                      r"\bwhen (?:did|was|were|is|are|will|does|do|has|have|had)\b|\b(?:what|which) (?:years?|dates?)\b", re.I)),
    (NUMBER, re.compile(r"多少|(?<![哪好这那近])几[个位名家项条种岁次倍成年天月周亿万千百十]|"
                        r"多[大高长远久重快](?!程度|的程度|作用|的作用|意义|的意义|影响|的影响|帮助|的帮助|力度)|"
                        r"百分之|比例|比重|占比|增速|增长率|\bhow (?:many|much|long|far|old)\b|\bwhat (?:percentage|share|proportion)\b", re.I)),
)
_HAS_TYPE = {
    DATE: re.compile(r"\d{2,4}\s*年|\d{1,2}\s*月|\d{1,2}\s*日|[〇零一二三四五六七八九十]{2,4}年|[一二三四五六七八九十]+月|世纪|年代|年前|"
                     r"[早中晚末初]期|[春夏秋冬][季天]"),
    # a digit not inside a Latin name (5G, G20), a counted Chinese numeral, a fraction or half
    NUMBER: re.compile(r"(?<![a-z])\d(?![a-z])|[零一二两三四五六七八九十百千万亿]+\s*[个位名家项条种岁次倍成元年天月周亿万千百%‰]|"
                       r"百分之|[％%]|分之|[一过大]半|半数", re.I),
}
# What form an answer to 为什么 (a reason) or 如何 (a means) takes, and an answer to 哪些 (a list).
_ANSWER_FORMS = (
    (re.compile(r"为什么|为何|什么原因|原因是|什么作用|什么意义|有何意义|有何作用|目的是|为了什么"),
     re.compile(r"因为|由于|因此|所以|有利于|有助于|关键|才能|为了|以便|从而|导致|使得|意义|作用")),
    (re.compile(r"如何|怎样|怎么|什么方式|哪些措施|什么措施|什么办法|哪些途径|什么途径|通过什么"),
     re.compile(r"通过|要|应|加快|推动|推进|建立|完善|加强|强化|鼓励|支持|实施|采取|利用|依托")),
)
_ASKS_LIST = re.compile(r"哪些|哪几|有什么|包括什么|分别是")
_LIST = re.compile(r"(?:、.*){2,}|一是|二是|首先|其次|第一|第二")
_NUMBER = re.compile(r"(?<![a-z]-)(?<![\d.])\d+(?:\.\d+)?")  # not the 19 of COVID-19: part of a name
_LATIN_WORD = re.compile(r"[a-z][a-z0-9]+")
_QUOTED = re.compile(r"[“\"《「『]([^”\"》」』]{2,})[”\"》」』]")
MAX_QUOTED_TERM_CHARS = 20
_NAMED = frozenset(("nr", "nrt", "ns", "nt", "nz"))  # jieba POS tags of names (HMM off: 0.04 ms a question)

SENTENCE_FEATURES = (
    "dense",  # cosine of the sentence to the question
    "dense_gap",  # that cosine minus the best one among the candidates
    "passage",  # cosine of the sentence's passage to the question
    "passage_z",  # how far that cosine stands above the other candidate passages' (a z-score)
    "passage_rank",  # 1 / (1 + the passage's rank in retrieval)
    "keyword",  # the passage's BM25 score relative to the best retrieved one
    "overlap",  # share of the question's character bigrams in the sentence
    "predicate_overlap",  # the same, leaving out the bigrams of a short (entity) title: what is asked about it
    "longest_match",  # the longest run of the question's characters found verbatim in the sentence, over the question's length
    "neighbour_overlap",  # the best predicate overlap of the sentences just before and after
    "idf_overlap",  # IDF-weighted share of the question's words (an English one's Chinese translations) found in the sentence
    "context_missing",  # IDF-weighted share of the question's words found nowhere in the passage, its section or title
    "key_missing",  # share of the question's key terms (numbers, names, places, quoted terms) absent from that context
    # (a name its article holds elsewhere counts as present: an article saying 我市 names its city once or twice)
    "number_missing",  # the question names a number (a year, an amount) that the passage does not hold
    "type_missing",  # the question asks for a number or a date and the sentence holds none
    "type_found",  # … and the sentence holds one
    "form_found",  # the question asks why or how and the sentence gives a reason (因为, 有利于…) or a means (通过, 要…)
    "list_found",  # the question asks which ones (哪些) and the sentence lists (two 、, 一是…)
    "length",  # log of the sentence length in characters
    "first",  # the sentence opens its passage (often a heading-like summary)
)
# For a question without Chinese no characters can match, and its cosines run lower than a Chinese question's: only the
# relative and language-independent features carry over to it, and the word overlaps of its Chinese translation.
CROSS_LINGUAL_FEATURES = ("dense_gap", "passage_z", "passage_rank", "idf_overlap", "context_missing", "number_missing", "type_missing",
                          "type_found", "length", "first")


@dataclass(frozen=True)
class QuestionTerms:
    """What the features need to know about a question, computed once per question."""

    bigrams: frozenset[str]
    words: tuple[tuple[tuple[str, ...], float], ...]  # content words (folded; for English, each phrase's Chinese
    # translations, any one of which counts) with their IDF in the index
    numbers: frozenset[str]
    key_terms: frozenset[str]  # numbers, Latin words, names of people, places and organisations, quoted terms
    answer_type: str | None
    chars: str  # folded, without punctuation or spaces
    forms: tuple[re.Pattern, ...] = ()  # the answer forms (a reason, a means) the question asks for
    asks_list: bool = False
    own_numbers: re.Pattern | None = None  # the question's numbers standing alone in a text: not an answer to it


def answer_type(question: str) -> str | None:
    """NUMBER or DATE when the question asks for one, else None."""
    return next((kind for kind, pattern in _QUESTION_TYPE if pattern.search(question)), None)


def analyse_question(index: Index, question: str) -> QuestionTerms:
    """The question's bigrams, weighted words (an English question's in Chinese), numbers, and the answer's expected type and form."""
    if is_chinese(question):
        words = tuple(((w,), idf(index, w)) for w in dict.fromkeys(tokens(question)))
    else:
        words = tuple((p, sum(idf(index, w) for w in p) / len(p)) for p in chinese_phrases(question, index.bm25.vocab_dict))
    folded = fold(question)
    numbers = frozenset(_NUMBER.findall(folded))
    own = "|".join(re.escape(n) for n in sorted(numbers))
    return QuestionTerms(frozenset(bigrams(question)), words, numbers, numbers | key_terms(folded),
                         answer_type(question), NON_WORD.sub("", folded),
                         tuple(form for asks, form in _ANSWER_FORMS if asks.search(folded)), bool(_ASKS_LIST.search(folded)),
                         re.compile(rf"(?<![\d.])(?:{own})(?![\d.])") if own else None)


def key_terms(folded: str) -> frozenset[str]:
    """Terms a passage must hold to answer: Latin words, named people, places and things (jieba POS), quoted terms."""
    named = {w for w, flag in posseg.lcut(folded, HMM=False) if flag in _NAMED and len(w) >= 2}
    return frozenset(named | set(_LATIN_WORD.findall(folded)) | {t for t in _QUOTED.findall(folded) if len(t) <= MAX_QUOTED_TERM_CHARS})


def holds_type(q: QuestionTerms, folded: str) -> bool:
    """Whether a (folded) sentence holds an answer of the type the question asks for, not counting the question's own
    numbers (the year it asks about is not the answer)."""
    if q.answer_type is None:
        return False
    if q.own_numbers is not None:
        folded = q.own_numbers.sub(" ", folded)
    return bool(_HAS_TYPE[q.answer_type].search(folded))


def in_article(index: Index, word: str, row: int) -> bool:
    """Whether a word of keyword search occurs in the article of the passage at `row` (False for a word it never indexed).

    An article that says 我市 throughout names its city once or twice: a question naming the city is still asked of it.
    An article's passages are consecutive rows, so of the passages holding the word only the nearest before and after
    `row` can be in it: two reads, whatever the size of the library.
    """
    column = index.bm25.vocab_dict.get(word)
    if column is None:
        return False
    scores = index.bm25.scores
    holding = scores["indices"][int(scores["indptr"][column]) : int(scores["indptr"][column + 1])]
    after = int(np.searchsorted(holding, row))
    article = index.passages[row].article_id
    return any(index.passages[int(holding[i])].article_id == article for i in (after - 1, after) if 0 <= i < len(holding))


@lru_cache(maxsize=PARSED_PASSAGES)
def folded_sentences(sentences: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[frozenset[str], ...]]:
    """A passage's sentences folded, and their bigrams: made once for a passage that is again among a question's
    candidates (folding and bigrams took a tenth of the reader's time)."""
    texts = tuple(fold(t) for t in sentences)
    return texts, tuple(frozenset(folded_bigrams(t)) for t in texts)


def _longest_match(chars: str, text: str) -> float:
    """The longest run of the question's characters found verbatim in a text, as a share of the question.

    Each start in the question only tries runs longer than the best so far, each try one `in` (C): a tenth of
    difflib's find_longest_match here (1.4 ms a question), with the same lengths.
    """
    best = 0
    for start in range(len(chars)):
        while start + best < len(chars) and chars[start : start + best + 1] in text:
            best += 1
    return best / len(chars) if chars else 0.0


def _share(wanted: frozenset[str] | set[str], found: set[str]) -> float:
    """The share of the wanted bigrams that are found (0 when none are wanted)."""
    return len(wanted & found) / len(wanted) if wanted else 0.0


def _weighted_share(words: tuple[tuple[tuple[str, ...], float], ...], text: str) -> float:
    """The IDF-weighted share of the words (any of a word's alternatives) that occur in the (folded) text; 0 without words."""
    total = sum(w for _, w in words)
    return sum(w for alternatives, w in words if any(map(text.__contains__, alternatives))) / total if total else 0.0


def sentence_features(index: Index, hits: list[Hit], query_vector: np.ndarray, question: str) -> tuple[np.ndarray, list[int]]:
    """Feature rows (SENTENCE_FEATURES order) for every sentence of the retrieved passages, and the sentence rows."""
    rows = [s for hit in hits for s in index.passage_sentences[hit.row]]
    if not rows:
        return np.zeros((0, len(SENTENCE_FEATURES)), dtype=np.float32), []
    q = analyse_question(index, question)
    dense = index.sentence_vectors[rows] @ query_vector.ravel()
    best_dense = float(dense.max())
    best_keyword = max(hit.keyword_score for hit in hits) or 1.0
    features = []
    for rank, hit in enumerate(hits):
        passage = index.passages[hit.row]
        title = index.articles[passage.article_id].title
        predicate = q.bigrams - (bigrams(title) if len(title) <= MAX_ENTITY_TITLE_CHARS else set())
        context = fold(" ".join((title, passage.section, passage.text)))
        context_missing = 1.0 - _weighted_share(q.words, context)
        key_missing = sum(term not in context and (term in q.numbers or not in_article(index, term, hit.row))
                          for term in q.key_terms) / len(q.key_terms) if q.key_terms else 0.0
        number_missing = float(any(n not in context for n in q.numbers))
        span = index.passage_sentences[hit.row]
        texts, grams = folded_sentences(passage.sentences)  # the rows of `span`, read with the passage
        predicates = [_share(predicate, g) for g in grams]
        for i, row in enumerate(span):
            has_type = holds_type(q, texts[i])
            neighbours = predicates[max(0, i - 1) : i] + predicates[i + 1 : i + 2]
            features.append((
                0.0,  # dense and dense_gap are filled in below, vectorised
                0.0,
                hit.dense_score,
                hit.dense_z,
                1.0 / (1 + rank),
                hit.keyword_score / best_keyword,
                _share(q.bigrams, grams[i]),
                predicates[i],
                _longest_match(q.chars, texts[i]),
                max(neighbours, default=0.0),
                _weighted_share(q.words, texts[i]),
                context_missing,
                key_missing,
                number_missing,
                float(q.answer_type is not None and not has_type),
                float(has_type),
                float(bool(q.forms) and any(form.search(texts[i]) for form in q.forms)),
                float(q.asks_list and bool(_LIST.search(texts[i]))),
                math.log1p(len(texts[i])),
                float(i == 0),
            ))
    out = np.asarray(features, dtype=np.float32)
    out[:, 0] = dense
    out[:, 1] = dense - best_dense
    return out, rows
