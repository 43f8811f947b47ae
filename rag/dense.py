"""The dense passage index, chosen by size: exact inner product for a small corpus, an HNSW graph over float16 above."""
from __future__ import annotations

import faiss
import numpy as np

from rag.config import DenseSettings

FLAT, HNSW = "flat", "hnsw"


def dense_kind(passages: int, settings: DenseSettings) -> str:
    """FLAT up to settings.flat_max_passages passages, HNSW above."""
    return FLAT if passages <= settings.flat_max_passages else HNSW


def build_dense(vectors: np.ndarray, settings: DenseSettings) -> faiss.Index:
    """A FAISS inner-product index of the rows of `vectors`, in row order: flat keeps them exactly, HNSW as float16."""
    dim = vectors.shape[1]
    if dense_kind(len(vectors), settings) == FLAT:
        index = faiss.IndexFlatIP(dim)
    else:  # float16 storage halves the memory; it moves cosines by about 1e-4, which a graph's approximation dwarfs
        index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_fp16, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = settings.hnsw_ef_construction
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def set_search(index: faiss.Index, settings: DenseSettings) -> None:
    """Apply the search-time settings to a loaded index: an HNSW graph's candidate list (efSearch)."""
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = settings.hnsw_ef_search
