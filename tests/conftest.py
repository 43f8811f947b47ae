"""Shared fixtures: the real model and the real index of the seed corpus, built once if missing or stale."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag.config import PROJECT_ROOT, Settings
from rag.pipeline import Pipeline

SEEDS = PROJECT_ROOT / "seeds"


@pytest.fixture(scope="session")
def pipeline() -> Pipeline:
    """The project's pipeline over seeds/ and index/ (the index is built first if it is missing or stale)."""
    p = Pipeline(Settings(seeds=SEEDS, index=PROJECT_ROOT / "index"))
    p.ensure_index(progress=False)
    return p


@pytest.fixture()
def scratch(tmp_path: Path, pipeline: Pipeline) -> Pipeline:
    """A pipeline over a private copy of the seeds and of the built index, free to change and rebuild."""
    shutil.copytree(SEEDS, tmp_path / "seeds")
    shutil.copytree(pipeline.settings.index, tmp_path / "index")
    return Pipeline(Settings(seeds=tmp_path / "seeds", index=tmp_path / "index"), model=pipeline.model)
