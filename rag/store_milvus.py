"""Passages in Milvus: their dense vectors and a BM25 full-text field (Milvus's jieba analyzer), one collection a build.

Selected by Settings.store: a Milvus server URI or a milvus-lite ".db" file. Records, sentence vectors and the
manifest stay in the local build folder whatever the store; a build adds its passages to a collection named after the
build folder, the manifest records it, and the collection is dropped when its build folder is removed.

Retrieval asks two plain searches, dense (inner product, top `depth`) and keyword (BM25, top `depth`), and fuses them
in Python with rag.retrieve.fuse rather than with Milvus's hybrid_search and its rankers: the weighted fusion (measured
better than RRF) needs each list's raw scores, which a ranker does not return, and so the fused scores, the passages
and the answers are those of the FAISS store, up to the analyzer's tokens. pymilvus is imported on first use, so the
default store never loads it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from rag.config import BM25_B, BM25_K1, MILVUS_ANALYZER, MILVUS_DENSE_INDEX, MILVUS_INSERT_ROWS, MILVUS_MAX_TEXT_BYTES
from rag.index import IndexUnavailable
from rag.keywords import STOPWORDS, fold

COLLECTION_PREFIX = "passages_"
NOT_A_NAME_CHAR = re.compile(r"[^0-9A-Za-z_]")  # Milvus names: letters, digits and underscores
ROW, VECTOR, TEXT, SPARSE = "row", "vector", "text", "sparse"
# Milvus's jieba tokens, less punctuation and rag.keywords' stopwords, as bm25s is given (milvus-lite drops the stopwords only)
ANALYZER = {**MILVUS_ANALYZER, "filter": ["removepunct", {"type": "stop", "stop_words": sorted(STOPWORDS)}]}


def collection_name(build_suffix: str) -> str:
    """The collection of a build, named after its folder's unique suffix within Milvus's name rules."""
    return COLLECTION_PREFIX + NOT_A_NAME_CHAR.sub("_", build_suffix)


@lru_cache(maxsize=None)
def _client(uri: str) -> Any:
    """One client per URI for the process (a milvus-lite file is opened once)."""
    from pymilvus import MilvusClient

    return MilvusClient(uri)


@dataclass(frozen=True)
class MilvusPassages:
    """One build's passages in a Milvus collection: the two searches retrieval fuses."""

    uri: str
    collection: str

    def search_dense(self, query_vector: np.ndarray, depth: int) -> dict[int, float]:
        """Inner product (cosine of unit vectors) of the best `depth` passages to the query, by row."""
        hits = _client(self.uri).search(self.collection, data=[query_vector.ravel().tolist()], anns_field=VECTOR, limit=depth,
                                        search_params={"metric_type": "IP"}, output_fields=[ROW])
        return {int(h[ROW]): float(h["distance"]) for h in hits[0]}

    def search_keyword(self, question: str, depth: int) -> dict[int, float]:
        """BM25 scores of the best `depth` passages sharing a word with the question, by row."""
        hits = _client(self.uri).search(self.collection, data=[fold(question)], anns_field=SPARSE, limit=depth,
                                        search_params={"metric_type": "BM25"}, output_fields=[ROW])
        # milvus-lite returns BM25 scores negated (a distance), a server as they are: the score is the magnitude.
        scores = {int(h[ROW]): abs(float(h["distance"])) for h in hits[0]}
        return {row: score for row, score in scores.items() if score > 0}


def add_passages(uri: str, collection: str, vectors: np.ndarray, texts: list[str]) -> None:
    """Create a build's collection and insert its passages: row, unit vector, and the embedded text for BM25."""
    from pymilvus import DataType, Function, FunctionType

    client = _client(uri)
    schema = client.create_schema(auto_id=False)
    schema.add_field(ROW, DataType.INT64, is_primary=True)
    schema.add_field(VECTOR, DataType.FLOAT_VECTOR, dim=int(vectors.shape[1]))
    # Folded (NFKC, lower case, Traditional as Simplified) as rag.keywords folds: a question matches in either script.
    schema.add_field(TEXT, DataType.VARCHAR, max_length=MILVUS_MAX_TEXT_BYTES, enable_analyzer=True, analyzer_params=ANALYZER)
    schema.add_field(SPARSE, DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=[TEXT], output_field_names=[SPARSE]))
    index = client.prepare_index_params()
    index.add_index(field_name=VECTOR, index_type=MILVUS_DENSE_INDEX, metric_type="IP")
    index.add_index(field_name=SPARSE, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                    params={"bm25_k1": BM25_K1, "bm25_b": BM25_B})
    client.create_collection(collection, schema=schema, index_params=index, consistency_level="Strong")
    rows = [{ROW: i, VECTOR: v.tolist(), TEXT: fold(t)} for i, (v, t) in enumerate(zip(vectors, texts))]
    for start in range(0, len(rows), MILVUS_INSERT_ROWS):
        client.insert(collection, rows[start : start + MILVUS_INSERT_ROWS])
    client.flush(collection)


def drop_passages(uri: str, collection: str) -> None:
    """Drop a build's collection, if it is there."""
    client = _client(uri)
    if client.has_collection(collection):
        client.drop_collection(collection)


def open_passages(uri: str, collection: str, rows: int) -> MilvusPassages:
    """A build's collection, checked to hold its `rows` passages; IndexUnavailable("corrupt") if missing or short."""
    client = _client(uri)
    found = None
    if client.has_collection(collection):
        client.load_collection(collection)  # a collection is released when its server or milvus-lite file is reopened
        found = client.query(collection, filter="", output_fields=["count(*)"])[0]["count(*)"]
    if found != rows:
        state = "is missing" if found is None else f"holds {found} passages, not {rows}"
        raise IndexUnavailable("corrupt", f"The Milvus collection {collection} at {uri} {state}: rebuild the index.")
    return MilvusPassages(uri, collection)
