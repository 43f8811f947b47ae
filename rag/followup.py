"""Follow-up questions: a short or subject-less question is read together with the one before it."""
from __future__ import annotations

import re

MAX_FOLLOWUP_CHARS = 8  # a question this short (letters and characters only) leans on the one before
FOLLOWUP_START = re.compile(r"^(?:那么?|还有|另外|此外|具体|其中|其|它|这些?|那些|该|此|and\b|what about\b|how about\b)", re.I)
_WORD_CHARS = re.compile(r"[\W_]+")


def is_followup(question: str) -> bool:
    """Whether a question reads as a follow-up: very short, or opening with 那/具体/其中/what about …."""
    return len(_WORD_CHARS.sub("", question)) <= MAX_FOLLOWUP_CHARS or bool(FOLLOWUP_START.match(question.strip()))


def with_context(question: str, previous: str | None) -> str:
    """The question to retrieve and read with: a follow-up joined to the previous question, else the question itself."""
    if previous and previous.strip() and is_followup(question):
        return f"{previous.strip()} {question.strip()}"
    return question
