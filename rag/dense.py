"""The dense passage index, chosen by size: exact inner product for a small corpus, an HNSW graph over float16 above."""
from __future__ import annotations

import faiss
import numpy as np

from rag.config import DenseSettings

FLAT, HNSW = "flat", "hnsw"
ADD_ROWS = 65_536  # vectors converted to float32 and added at a time, so a large build holds one block, not all


def dense_kind(passages: int, settings: DenseSettings) -> str:
    """FLAT up to settings.flat_max_passages passages, HNSW above."""
    return FLAT if passages <= settings.flat_max_passages else HNSW


def build_dense(vectors: np.ndarray, settings: DenseSettings) -> faiss.Index:
    """A FAISS inner-product index of the rows of `vectors` (float16 or float32, memory-mapped or not), in row order."""
    dim = vectors.shape[1]
    if dense_kind(len(vectors), settings) == FLAT:
        index = faiss.IndexFlatIP(dim)
    else:  # float16 storage keeps the stored vectors exactly: they were rounded to float16 when embedded
        index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_fp16, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = settings.hnsw_ef_construction
        index.hnsw.efSearch = settings.hnsw_ef_search
    for start in range(0, len(vectors), ADD_ROWS):
        index.add(np.asarray(vectors[start : start + ADD_ROWS], dtype=np.float32))
    return index
