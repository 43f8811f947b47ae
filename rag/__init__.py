"""Question answering over Chinese policy articles: `ask()` quotes the sentences that answer, citing their articles."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["Answer", "Pipeline", "Settings", "ask"]
_HOMES = {"Answer": "rag.answer", "Settings": "rag.config", "Pipeline": "rag.pipeline", "ask": "rag.pipeline"}

if TYPE_CHECKING:
    from rag.answer import Answer
    from rag.config import Settings
    from rag.pipeline import Pipeline, ask


def __getattr__(name: str) -> Any:
    """The public names, imported on first use: `python -m rag.model` then runs that module once, not twice."""
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'rag' has no attribute {name!r}")
