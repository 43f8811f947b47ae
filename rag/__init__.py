"""Question answering over Chinese policy articles: `ask()` quotes the sentences that answer, citing their articles."""
from rag.answer import Answer
from rag.config import Settings
from rag.pipeline import Pipeline, ask

__all__ = ["Answer", "Pipeline", "Settings", "ask"]
