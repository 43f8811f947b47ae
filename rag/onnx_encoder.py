"""Embeddings through onnxruntime and tokenizers, without torch: the same prompts, mean pooling and L2 normalisation.

Texts are sorted by length before batching, so a batch pads little (unsorted batches ran 3× slower).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import PASSAGE_PROMPT, QUERY_PROMPT

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
ST_CONFIG = "config_sentence_transformers.json"
POOLING_CONFIG = "1_Pooling/config.json"
DEFAULT_MAX_TOKENS = 512
DEFAULT_PAD_TOKEN = "<pad>"
MIN_TOKENS = 1e-9  # sentence-transformers clamps the token count so, before dividing
MIN_NORM = 1e-12  # and the norm so (torch.nn.functional.normalize)
QUIET = 3  # onnxruntime log level: errors only
NO_SPINNING = "0"  # idle threads sleep instead of spinning: on a shared 2-core machine spinning doubled query latency


class OnnxModelError(RuntimeError):
    """A model folder or ONNX file that this encoder cannot use."""


@dataclass(frozen=True)
class OnnxEncoder:
    """A tokenizer and the sessions that embed questions and passages (one session when both use the same file)."""

    tokenizer: Any  # tokenizers.Tokenizer, truncating at the model's length
    query_session: Any  # onnxruntime.InferenceSession
    passage_session: Any
    query_prompt: str
    passage_prompt: str
    pad_id: int
    dimension: int

    def get_embedding_dimension(self) -> int:
        """The vector length, named as sentence-transformers names it."""
        return self.dimension


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def _prompts(model_dir: Path) -> tuple[str, str]:
    """The model's own query and passage prompts, as sentence-transformers picks them, else the e5 ones."""
    prompts = _json(model_dir / ST_CONFIG).get("prompts") or {}
    passage = next((prompts[n] for n in ("document", "passage") if n in prompts), PASSAGE_PROMPT)
    return prompts.get("query", QUERY_PROMPT), passage


def _check_mean_pooling(model_dir: Path) -> None:
    """Raise unless the model pools by the mean of its token embeddings (the one pooling implemented here)."""
    pooling = _json(model_dir / POOLING_CONFIG)
    if pooling.get("pooling_mode", "mean" if pooling.get("pooling_mode_mean_tokens") else None) != "mean":
        raise OnnxModelError(f"{model_dir} does not use mean pooling; use the torch backend for it")


def session(path: Path, threads: int) -> Any:
    """An onnxruntime CPU session over one ONNX file; OnnxModelError if the file cannot be read."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = QUIET
    options.add_session_config_entry("session.intra_op.allow_spinning", NO_SPINNING)
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for a damaged file
        raise OnnxModelError(f"onnxruntime cannot load {path}: {exc}") from exc


def load_encoder(model_dir: Path, query_file: Path, passage_file: Path, threads: int = 0) -> OnnxEncoder:
    """An encoder for the model in ``model_dir`` running the given ONNX files (0 threads: one per core)."""
    from tokenizers import Tokenizer

    model_dir = Path(model_dir)
    _check_mean_pooling(model_dir)
    config = _json(model_dir / TOKENIZER_CONFIG)
    tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
    tokenizer.enable_truncation(int(config.get("model_max_length") or DEFAULT_MAX_TOKENS))
    tokenizer.no_padding()
    pad_id = tokenizer.token_to_id(config.get("pad_token") or DEFAULT_PAD_TOKEN) or 0
    query_session = session(query_file, threads)
    passage_session = query_session if passage_file == query_file else session(passage_file, threads)
    dimension = int(query_session.get_outputs()[0].shape[-1])
    return OnnxEncoder(tokenizer, query_session, passage_session, *_prompts(model_dir), pad_id, dimension)


def _run(encoder: OnnxEncoder, onnx_session: Any, ids: list[list[int]]) -> np.ndarray:
    """Mean-pooled, L2-normalised float32 rows of one batch of token ids (padded here to its longest)."""
    width = max(len(row) for row in ids)
    input_ids = np.full((len(ids), width), encoder.pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)], mask[i, : len(row)] = row, 1
    tokens = onnx_session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]
    weights = mask[..., None].astype(np.float32)
    pooled = (tokens * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), MIN_TOKENS)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), MIN_NORM)


def embed(encoder: OnnxEncoder, texts: list[str], *, query: bool, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
    """Strip, prompt, embed in batches of similar length; L2-normalised float32 rows in the order given."""
    prompt, onnx_session = (encoder.query_prompt, encoder.query_session) if query else (encoder.passage_prompt, encoder.passage_session)
    if not texts:
        return np.zeros((0, encoder.dimension), dtype=np.float32)
    ids = [e.ids for e in encoder.tokenizer.encode_batch([prompt + t.strip() for t in texts])]
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    out = np.empty((len(ids), encoder.dimension), dtype=np.float32)
    starts = range(0, len(order), batch_size)
    if show_progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="Batches")
    for start in starts:
        rows = order[start : start + batch_size]
        out[rows] = _run(encoder, onnx_session, [ids[i] for i in rows])
    return out
