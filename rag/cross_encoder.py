"""The cross-encoder: a question and a candidate sentence read together, scored for "this sentence answers it".

Made of the model we already have: the materialised e5-small's first layers, with trained low-rank adapters merged into
their weights and a one-unit head over the mean of the last layer. The adapters and head are a small file in the repo
(rag/cross_encoder.safetensors, written by `python -m benchmarks.fit_cross_encoder`); the base weights come from the
materialised model. Training runs on torch (pair_logits); answering runs the merged model on onnxruntime, exported into
the cache once per adapters file and base model (export_scorer), each pair on its own (padding pairs of uneven length to
the longest cost a third more), the pairs spread over one single-threaded run per core (78 ms for six pairs on 2 cores,
against 101 ms with onnxruntime's two threads on each pair in turn).
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import PASSAGE_PROMPT, QUERY_PROMPT, CrossEncoderSettings, cache_dir
from rag.model import ModelError, ensure_export, load_exported, model_fingerprint, sha256_file
from rag.onnx_encoder import session
from rag.onnx_export import FP32_FILE, INPUT_NAMES, export_module, readable_files

FILE_MODE = 0o644
LORA_A, LORA_B = ".lora_A.default.weight", ".lora_B.default.weight"  # peft's names for the two factors of an adapter
OUTPUT_NAME = "logits"
EXPORT_DIR = "cross-encoder"  # in cache_dir(); exported again when the adapters file or the base model changes
TOKENIZER_FILE = "tokenizer.json"
FINGERPRINT_CHARS = 16
SESSION_THREADS = 1  # per run: the pairs run side by side instead (CrossEncoder.pool)


@dataclass(frozen=True)
class CrossEncoder:
    """A loaded cross-encoder: the pair tokenizer and the onnxruntime session of the merged model and head."""

    tokenizer: Any  # tokenizers.Tokenizer: question and prompted sentence, the sentence cut to max_tokens
    session: Any  # onnxruntime.InferenceSession (one thread a run): input_ids, attention_mask -> one logit per pair
    pool: ThreadPoolExecutor  # runs pairs side by side
    about: dict  # the training record in the adapters file


def pair_texts(questions: list[str], sentences: list[str]) -> tuple[list[str], list[str]]:
    """The two texts of each pair, with the prompts e5 was trained with."""
    return [QUERY_PROMPT + q for q in questions], [PASSAGE_PROMPT + s for s in sentences]


def head_logits(model, head, input_ids, attention_mask):
    """The head's logit over the masked mean of the last layer, one per row (torch): in training and in the exported scorer."""
    hidden = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return head((hidden * mask).sum(1) / mask.sum(1)).squeeze(-1)


def pair_logits(tokenizer, model, head, questions: list[str], sentences: list[str], max_tokens: int):
    """Each pair's logit (a torch tensor), the pairs padded to the longest: for training."""
    enc = tokenizer(*pair_texts(questions, sentences), return_tensors="pt", padding=True, truncation="only_second", max_length=max_tokens)
    return head_logits(model, head, enc["input_ids"], enc["attention_mask"])


def save_adapters(tensors: dict, settings: CrossEncoderSettings, about: dict) -> Path:
    """Write the adapters and head (float16) with the settings they were trained under, atomically."""
    from safetensors.torch import save_file

    path = Path(settings.weights)
    tmp = path.with_suffix(".tmp")
    shape = {k: v for k, v in asdict(settings).items() if k in ("layers", "rank", "alpha", "targets", "max_tokens")}
    save_file({k: v.half().contiguous() for k, v in tensors.items()}, str(tmp),
              metadata={"settings": json.dumps(shape), "about": json.dumps(about, ensure_ascii=False)})
    tmp.chmod(FILE_MODE)  # safetensors writes it owner-only
    tmp.replace(path)
    return path


def read_adapters(weights: Path) -> tuple[dict, dict]:
    """The adapters file's shape (the settings it was trained under) and training record; ModelError if unusable."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="np") as f:
            meta = f.metadata() or {}
            if not any(k.endswith(LORA_A) for k in f.keys()) or "head.weight" not in f.keys():
                raise KeyError("no adapters or head")
        return json.loads(meta["settings"]), json.loads(meta.get("about", "{}"))
    except (OSError, ValueError, KeyError, SafetensorError) as e:
        raise ModelError(f"The cross-encoder in {weights} is missing or damaged ({e}): "
                         "run `python -m benchmarks.fit_cross_encoder`, or use the fast path (RAG_READER=fast).") from e


def adapter_tensors(weights: Path) -> dict:
    """The adapters' and the head's tensors by name, in float32 (torch), to merge or to train further."""
    from safetensors.torch import load_file

    return {k: v.float() for k, v in load_file(str(weights)).items()}


def merged_model(model_dir: str, weights: Path):
    """The base model cut to the trained layers, each adapter merged into its weight (W += B·A·alpha/rank), and the head (torch)."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    shape, _ = read_adapters(weights)
    tensors = adapter_tensors(weights)
    transformers_logging.set_verbosity_error()  # the unused pooler weights are reported, as expected
    transformers_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(model_dir, add_pooling_layer=False)
    model.encoder.layer = model.encoder.layer[: shape["layers"]]
    modules = dict(model.named_modules())
    scale = shape["alpha"] / shape["rank"]
    with torch.no_grad():
        for name in [k[: -len(LORA_A)] for k in tensors if k.endswith(LORA_A)]:
            modules[name].weight += tensors[name + LORA_B] @ tensors[name + LORA_A] * scale
    head = torch.nn.Linear(model.config.hidden_size, 1)
    head.load_state_dict({"weight": tensors["head.weight"], "bias": tensors["head.bias"]})
    return model.eval(), head.eval()


def export_scorer(model_dir: str, weights: Path, folder: Path) -> list[str]:
    """Write the merged model and head, token ids and mask to one logit a pair, as ONNX into ``folder``; the names written."""
    import torch

    model, head = merged_model(model_dir, weights)

    class Scorer(torch.nn.Module):
        """input_ids, attention_mask -> one logit a row."""

        def __init__(self) -> None:
            super().__init__()
            self.model, self.head = model, head

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return head_logits(self.model, self.head, input_ids, attention_mask)

    export_module(Scorer(), folder / FP32_FILE, OUTPUT_NAME)
    return readable_files(folder)


def load_cross_encoder(model_dir: str, settings: CrossEncoderSettings, threads: int = 0) -> CrossEncoder:
    """The cross-encoder of the adapters file over the model in ``model_dir``, exported first if need be; ModelError if unusable.

    ``threads``: how many pairs run side by side (0: one a core).
    """
    from tokenizers import Tokenizer

    shape, about = read_adapters(settings.weights)
    source = f"{sha256_file(settings.weights)[:FINGERPRINT_CHARS]}-{model_fingerprint(model_dir)}"
    export = lambda folder: export_scorer(model_dir, settings.weights, folder)
    fallback = "use the fast reader (RAG_READER=fast)"
    target = cache_dir() / EXPORT_DIR
    scorer = load_exported(lambda damaged: ensure_export(target, source, export, (FP32_FILE,), fallback, damaged=damaged),
                           lambda folder: session(folder / FP32_FILE, SESSION_THREADS), f"the cross-encoder in {target}")
    try:
        tokenizer = Tokenizer.from_file(str(Path(model_dir) / TOKENIZER_FILE))
    except Exception as exc:  # tokenizers raises its own exception type for a missing or damaged file
        raise ModelError(f"could not load the tokenizer of {model_dir}: {exc}") from exc
    tokenizer.enable_truncation(int(shape["max_tokens"]), strategy="only_second")
    tokenizer.no_padding()
    return CrossEncoder(tokenizer, scorer, ThreadPoolExecutor(threads or os.cpu_count() or 1), about)


def cross_scores(encoder: CrossEncoder, question: str, sentences: list[str]) -> np.ndarray:
    """Each sentence's logit of answering the question, each pair run on its own (no padding)."""

    def logit(ids: list[int]) -> float:
        row = np.array([ids], dtype=np.int64)
        return float(encoder.session.run(None, dict(zip(INPUT_NAMES, (row, np.ones_like(row)))))[0][0])

    pairs = encoder.tokenizer.encode_batch(list(zip(*pair_texts([question] * len(sentences), sentences))))
    return np.array(list(encoder.pool.map(logit, [e.ids for e in pairs])), dtype=np.float32)
