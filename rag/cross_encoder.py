"""The cross-encoder: a question and a candidate sentence read together, scored for "this sentence answers it".

Made of the model we already have: the materialised e5-small's first layers, with trained low-rank adapters merged into
their weights and a one-unit head over the mean of the last layer. The adapters and head are a small file in the repo
(rag/cross_encoder.safetensors, written by `python -m benchmarks.fit_cross_encoder`); the base weights come from the
materialised model. It runs on torch, a few pairs a question (CrossEncoderSettings.candidates).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rag.config import PASSAGE_PROMPT, QUERY_PROMPT, CrossEncoderSettings
from rag.model import ModelError

FILE_MODE = 0o644
LORA_A, LORA_B = ".lora_A.default.weight", ".lora_B.default.weight"  # peft's names for the two factors of an adapter


@dataclass(frozen=True)
class CrossEncoder:
    """A loaded cross-encoder: tokenizer, the merged truncated model and the head (torch objects)."""

    tokenizer: object
    model: object
    head: object
    max_tokens: int
    about: dict


def pair_texts(questions: list[str], sentences: list[str]) -> tuple[list[str], list[str]]:
    """The two texts of each pair, with the prompts e5 was trained with."""
    return [QUERY_PROMPT + q for q in questions], [PASSAGE_PROMPT + s for s in sentences]


def pair_logits(tokenizer, model, head, questions: list[str], sentences: list[str], max_tokens: int):
    """The head's logit over the mean of the last layer, for each pair (a torch tensor): in training and in scoring alike."""
    enc = tokenizer(*pair_texts(questions, sentences), return_tensors="pt", padding=True, truncation="only_second", max_length=max_tokens)
    hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    return head((hidden * mask).sum(1) / mask.sum(1)).squeeze(-1)


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


def load_cross_encoder(model_dir: str, settings: CrossEncoderSettings, threads: int = 0) -> CrossEncoder:
    """The base model cut to the trained layers, each adapter merged into its weight (W += B·A·alpha/rank); ModelError if unusable."""
    import torch
    from safetensors import SafetensorError, safe_open
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    try:
        transformers_logging.set_verbosity_error()  # the unused pooler weights are reported, as expected
        transformers_logging.disable_progress_bar()
        with safe_open(str(settings.weights), framework="pt") as f:
            meta = f.metadata()
            tensors = {k: f.get_tensor(k).float() for k in f.keys()}
        shape = json.loads(meta["settings"])
        if threads > 0:
            torch.set_num_threads(threads)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModel.from_pretrained(model_dir, add_pooling_layer=False)
        model.encoder.layer = model.encoder.layer[: shape["layers"]]
        modules = dict(model.named_modules())
        scale = shape["alpha"] / shape["rank"]
        with torch.no_grad():
            for name in [k[: -len(LORA_A)] for k in tensors if k.endswith(LORA_A)]:
                modules[name].weight += tensors[name + LORA_B] @ tensors[name + LORA_A] * scale
        head = torch.nn.Linear(model.config.hidden_size, 1)
        head.load_state_dict({"weight": tensors["head.weight"], "bias": tensors["head.bias"]})
        model.eval()
        return CrossEncoder(tokenizer, model, head, int(shape["max_tokens"]), json.loads(meta.get("about", "{}")))
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:
        raise ModelError(f"The cross-encoder in {settings.weights} is missing or damaged ({e}): "
                         "run `python -m benchmarks.fit_cross_encoder`, or use the fast path (RAG_READER=fast).") from e


def cross_scores(encoder: CrossEncoder, question: str, sentences: list[str]) -> np.ndarray:
    """Each sentence's logit of answering the question, in one forward pass."""
    if not sentences:
        return np.zeros(0, dtype=np.float32)
    import torch

    with torch.inference_mode():
        logits = pair_logits(encoder.tokenizer, encoder.model, encoder.head, [question] * len(sentences), sentences, encoder.max_tokens)
    return logits.numpy().astype(np.float32)
