"""Train the cross-encoder's adapters and write rag/cross_encoder.safetensors: `python -m benchmarks.fit_cross_encoder`.

The cross-encoder reads a question and a sentence together (rag/cross_encoder.py): the materialised e5-small's first
CrossEncoderSettings.layers layers, low-rank adapters (LoRA, trained here with peft) on each of their linear maps and a one-unit head
over the mean of the last layer. Only the adapters and the head are written (well under 2 MB); the base weights keep
coming from the materialised model.

Fitting data, never the sets we measure on: CMRC 2018 trial and the fitting 80% of DRCD and SQuAD 2.0 zh, less the quarter
of their articles (and the seed fitting questions) that benchmarks.fit_reader fits the second stage on: a second stage
fitted on what the encoder was trained on trusts it too much. For each answerable question the sentence holding the
answer is a positive; the other sentences of its context (those sharing most words with the question first) and a
sentence of another context of the same document are negatives. Each unanswerable SQuAD 2.0 question's closest
sentences are negatives, and so is the answer sentence asked after another year, number or place
(fit_reader.swap_key_term): the near-topic question the articles cannot answer. 36,555 pairs, 43 minutes on 2 cores at
14 pairs/s (`--pairs` trades time for quality). `--start rag/cross_encoder.safetensors --lr 2e-4` trains another epoch
from the adapters there, the pairs in another order (26 minutes at 24 pairs/s); then `python -m benchmarks.fit_reader
--cross-only` refits the second stage for them. The committed adapters are two epochs: a third (lr 1e-4) measured no
better (validation set: one more unanswerable question declined; hard paraphrases: one fewer right). `--layers 12
--out FILE` trains a deeper one beside the committed adapters (40 minutes an epoch at 15 pairs/s); after two epochs it
measured no better than the committed 6-layer one and reads pairs 2.2 times slower (README, the cross-encoder).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.fit_reader import swap_key_term
from benchmarks.qa_sets import available, contains_answer, load
from rag.config import CrossEncoderSettings, Settings
from rag.cross_encoder import adapter_tensors, pair_logits, pair_texts, read_adapters, save_adapters
from rag.keywords import bigrams

FIT_SETS = ("cmrc-trial", "drcd", "squad2-zh")
CONTEXT_NEGATIVES = 3  # other sentences of the gold context, those sharing most bigrams with the question first
UNANSWERABLE_NEGATIVES = 3
SEED = 0
LENGTH_CHUNK_BATCHES = 50  # pairs are sorted by length within this many batches' worth, then batched


@dataclass(frozen=True)
class Pair:
    question: str
    sentence: str
    label: float


def _closest(question: str, sentences: list[str], n: int) -> list[str]:
    wanted = bigrams(question)
    return sorted(sentences, key=lambda s: -len(wanted & bigrams(s)))[:n]


def sentences_by_article(passages) -> dict[str, list[str]]:
    """Each article's sentences, in order."""
    sentences: dict[str, list[str]] = {}
    for p in passages:
        sentences.setdefault(p.article_id, []).extend(p.sentences)
    return sentences


def question_pairs(question: str, answers: tuple[str, ...], context: list[str], elsewhere: list[str], rng: random.Random) -> list[Pair]:
    """The labelled pairs one question gives: its answer sentence(s), hard negatives, and the key-term swapped question."""
    if not answers:
        return [Pair(question, s, 0.0) for s in _closest(question, context, UNANSWERABLE_NEGATIVES)]
    positives = [s for s in context if contains_answer(s, answers)]
    if not positives:
        return []
    others = [s for s in context if s not in positives]
    pairs = [Pair(question, positives[0], 1.0)]
    pairs += [Pair(question, s, 0.0) for s in _closest(question, others, CONTEXT_NEGATIVES)]
    if elsewhere:
        pairs.append(Pair(question, rng.choice(elsewhere), 0.0))
    swapped = swap_key_term(question, "".join(context))
    if swapped:
        pairs.append(Pair(swapped, positives[0], 0.0))
    return pairs


def set_pairs(name: str, settings: Settings, rng: random.Random) -> list[Pair]:
    """The pairs of one public set's fitting questions."""
    corpus, questions = load(name, settings.max_passage_chars)
    sentences = sentences_by_article(corpus.passages)
    title = {a.id: a.title for a in corpus.articles}
    by_title: dict[str, list[str]] = {}
    for article_id, s in sentences.items():
        by_title.setdefault(title[article_id], []).append(article_id)
    pairs = []
    for q in questions:
        if q.held_out or q.stacking:
            continue
        siblings = [a for a in by_title[title[q.context]] if a != q.context]
        elsewhere = sentences[rng.choice(siblings)] if siblings else []
        pairs += question_pairs(q.text, q.answers, sentences[q.context], elsewhere, rng)
    return pairs


def length_batches(pairs: list[Pair], tokenizer, batch_size: int, epochs: float, max_tokens: int, seed: int = SEED) -> list[list[int]]:
    """Batches of pairs of about the same length (padding to the longest cost 2-3x), in random order."""
    q, s = pair_texts([p.question for p in pairs], [p.sentence for p in pairs])
    lengths = [min(max_tokens, len(ids)) for ids in tokenizer(q, s)["input_ids"]]
    rng = random.Random(seed)
    order = [i for _ in range(int(np.ceil(epochs))) for i in rng.sample(range(len(pairs)), len(pairs))][: int(len(pairs) * epochs)]
    batches = []
    chunk = batch_size * LENGTH_CHUNK_BATCHES
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lengths.__getitem__)
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def _saved_name(name: str) -> str:
    """A trained parameter's name in the adapters file (without peft's wrapper prefix)."""
    return name.replace("base_model.model.", "")


def earlier_epochs(about: dict | None) -> int:
    """How many training runs lie behind adapters with this training record (each names the one it started from)."""
    return 0 if about is None else 1 + earlier_epochs(about.get("started_from"))


def train(pairs: list[Pair], settings: CrossEncoderSettings, model_dir: str, epochs: float, batch_size: int, lr: float,
          start: Path | None = None, order_seed: int = SEED) -> dict:
    """Train LoRA adapters and the head on the pairs (binary cross-entropy), from `start`'s if given; the trained tensors by name."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModel.from_pretrained(model_dir, add_pooling_layer=False)
    base.encoder.layer = base.encoder.layer[: settings.layers]
    model = get_peft_model(base, LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=0.1,
                                            target_modules=list(settings.targets)))
    head = torch.nn.Linear(base.config.hidden_size, 1)
    trained = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if start is not None:
        tensors = adapter_tensors(start)
        with torch.no_grad():
            for name, p in trained.items():
                p.copy_(tensors[_saved_name(name)])
            head.weight.copy_(tensors["head.weight"])
            head.bias.copy_(tensors["head.bias"])
    params = list(trained.values()) + list(head.parameters())
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    batches = length_batches(pairs, tokenizer, batch_size, epochs, settings.max_tokens, order_seed)
    steps = len(batches)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: min(1.0, (s + 1) / (0.05 * steps)) * max(0.0, 1 - s / steps))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    started = time.perf_counter()
    for step, rows in enumerate(batches):
        batch = [pairs[i] for i in rows]
        logits = pair_logits(tokenizer, model, head, [p.question for p in batch], [p.sentence for p in batch], settings.max_tokens)
        loss = loss_fn(logits, torch.tensor([p.label for p in batch]))
        loss.backward()
        optimiser.step()
        schedule.step()
        optimiser.zero_grad()
        if step % 50 == 0 or step == steps - 1:
            rate = (step + 1) * batch_size / (time.perf_counter() - started)
            print(f"step {step + 1}/{steps}  loss {loss.item():.3f}  {rate:.1f} pairs/s", file=sys.stderr, flush=True)
    tensors = {_saved_name(name): p.detach().clone() for name, p in trained.items()}
    tensors["head.weight"], tensors["head.bias"] = head.weight.detach().clone(), head.bias.detach().clone()
    return tensors


def main() -> int:
    """Collect the pairs, train, write the adapters and print what was trained on."""
    from rag.model import resolve_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=48_000, help="most pairs trained on (sampled from all; about 14 a second on 2 cores)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--start", type=Path, help="adapters file to go on training from (another epoch), instead of fresh adapters")
    parser.add_argument("--layers", type=int, help=f"of the model's 12 the cross-encoder keeps (default {CrossEncoderSettings.layers}, or --start's)")
    parser.add_argument("--out", type=Path, default=CrossEncoderSettings.weights, help="adapters file to write")
    args = parser.parse_args()
    shape, started_from = read_adapters(args.start) if args.start else ({"layers": CrossEncoderSettings.layers}, None)
    if args.start and args.layers not in (None, shape["layers"]):
        parser.error(f"--start {args.start} has {shape['layers']} layers; --layers {args.layers} cannot go on from it")
    ce = CrossEncoderSettings(weights=args.out, layers=args.layers or shape["layers"])
    settings = Settings.from_env()
    rng = random.Random(SEED)
    pairs: list[Pair] = []
    counts = {}
    for name in FIT_SETS:
        if available(name):
            got = set_pairs(name, settings, rng)
            counts[name] = len(got)
            pairs += got
    if not pairs:
        print("nothing to fit on: ../shared/data is absent; the adapters are unchanged")
        return 0
    rng.shuffle(pairs)
    pairs = pairs[: args.pairs]
    print(f"pairs: {counts}; training on {len(pairs)} ({sum(p.label for p in pairs):.0f} positive)", file=sys.stderr)
    started = time.perf_counter()
    # each run from trained adapters sees the pairs in another order
    tensors = train(pairs, ce, resolve_model(settings.model), args.epochs, args.batch_size, args.lr, args.start,
                    SEED + earlier_epochs(started_from))
    about = {"command": "python -m benchmarks.fit_cross_encoder", "started_from": started_from, "pairs": counts, "trained_on": len(pairs), "epochs": args.epochs,
             "lr": args.lr, "batch_size": args.batch_size, "layers": ce.layers, "minutes": round((time.perf_counter() - started) / 60, 1),
             "fitted_at": time.strftime("%Y-%m-%d")}
    path = save_adapters(tensors, ce, about)
    print(f"wrote {path} ({path.stat().st_size} bytes): {json.dumps(about)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
