"""ONNX copies of a sentence-transformers model's transformer: fp32 through torch.onnx (dynamo), and int8 weights.

export_module traces any module from token ids and mask (the cross-encoder's scorer too, rag/cross_encoder.py).

Weights go to a separate ``.data`` file beside each graph: onnxruntime maps it instead of parsing it, which loads the
fp32 model in under a second instead of about four.

Conversion only (it needs torch, onnxscript and onnx); running the files is rag.onnx_encoder's job, finding and
checking them rag.model's.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

FP32_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "last_hidden_state"
FILE_MODE = 0o644
EXAMPLE_SHAPE = (2, 16)  # batch and tokens of the traced example; both axes are exported as dynamic


def export_module(module, target: Path, output_name: str) -> None:
    """Trace a torch module from token ids and mask to one output into an ONNX file (its weights in a ``.data`` file beside)."""
    import torch

    example = tuple(torch.ones(EXAMPLE_SHAPE, dtype=torch.long) for _ in INPUT_NAMES)
    batch, tokens = torch.export.Dim("batch"), torch.export.Dim("tokens")
    dynamic = {name: {0: batch, 1: tokens} for name in INPUT_NAMES}
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" and the like
    # The exporter prints its steps and warns about axis names and deprecations: noise to whoever runs rag.model.
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module.eval(), example, dynamo=True, input_names=list(INPUT_NAMES), output_names=[output_name],
            dynamic_shapes=dynamic, external_data=False, optimize=True, verbose=False,
        )
        program.save(str(target), external_data=True)


def export_fp32(model_dir: Path, target: Path) -> None:
    """Trace the model's transformer from token ids and mask to token embeddings into one ONNX file."""
    import torch

    from rag.model import load_model

    transformer = load_model(str(model_dir), backend="torch")[0].auto_model.eval()

    class TokenEmbeddings(torch.nn.Module):
        """input_ids, attention_mask -> last_hidden_state: what sentence-transformers pools."""

        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    export_module(TokenEmbeddings(), target, OUTPUT_NAME)


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation of an ONNX file's weights (activations are quantised on the fly)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "consider pre-processing" is advice for static quantisation
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, use_external_data_format=True)
    finally:
        root.setLevel(level)


def readable_files(folder: Path) -> list[str]:
    """Make every file in ``folder`` readable by all (the exporters make some owner-only); their names, sorted."""
    written = sorted(p for p in folder.iterdir() if p.is_file())
    for path in written:
        path.chmod(FILE_MODE)
    return [p.name for p in written]


def export(model_dir: Path, folder: Path) -> list[str]:
    """Write the fp32 and int8 ONNX files of the model in ``model_dir`` into ``folder``; return the names written."""
    export_fp32(model_dir, folder / FP32_FILE)
    quantize_int8(folder / FP32_FILE, folder / INT8_FILE)
    return readable_files(folder)
