"""Export the local sentence-transformers model to ONNX once, optionally int8-quantised.

The export runs offline from the model folder (torch's ONNX exporter, then
onnxruntime's BERT graph optimiser and dynamic quantiser) and lands under
``settings.models_dir`` in a folder named after the source's fingerprint, so a
different embedder never reuses a stale export. The folder is built under a
temporary name and renamed into place, so a crash leaves nothing half-written.
Only models whose sentence embedding is the mean of the transformer's token states
(optionally normalised) are exported: that is the graph traced here, and its width
is the transformer's hidden size, which the manifest records.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from kgqa.assets import resolve_embedder
from kgqa.settings import Settings

logger = logging.getLogger(__name__)

FP32_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
MANIFEST_FILE = "manifest.json"
EXPORT_VERSION = 3  # bump when the export recipe changes
# Layers whose FFN output projection stays float32: after GELU their activations have
# outliers that per-tensor int8 clips, and errors there grow through the later layers.
# Keeping three of 24 projections in fp32 lifts the worst cosine to the float model from
# 0.988 to 0.991 over 128 real passages for ~7% of the int8 speed-up (bench/embed.py).
FP32_FFN_OUTPUT_LAYERS = (0, 1, 2)


def source_fingerprint(folder: Path) -> str:
    """Identify the source weights cheaply: path, size and mtime of the weight and config files."""
    digest = hashlib.sha256(f"v{EXPORT_VERSION}".encode())
    for name in ("model.safetensors", "pytorch_model.bin", "config.json", "tokenizer.json",
                 "sentence_bert_config.json", "modules.json"):
        path = folder / name
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return digest.hexdigest()[:12]


def export_dir(settings: Settings) -> Path:
    folder = resolve_embedder(settings)
    return settings.models_dir / f"embedder-onnx-{source_fingerprint(folder)}"


def exported_dim(settings: Settings) -> int:
    """The export's vector width without loading anything: its manifest's, else the source's hidden size.

    Raises ``ValueError`` when the model cannot be exported.
    """
    manifest = export_dir(settings) / MANIFEST_FILE
    if manifest.is_file():
        dim = json.loads(manifest.read_text()).get("dim")
        if isinstance(dim, int) and dim > 0:
            return dim
    return _exportable_dim(resolve_embedder(settings))


def prepare_onnx_model(settings: Settings, *, quantized: bool = True) -> Path:
    """The ONNX file to run (int8 or fp32), exporting it first if it is not on disk yet."""
    target = export_dir(settings)
    if not (target / MANIFEST_FILE).is_file():
        _build(resolve_embedder(settings), target)
    return target / (INT8_FILE if quantized else FP32_FILE)


def _exportable_dim(source: Path) -> int:
    """The hidden size, after checking the model is a transformer with mean pooling, as the traced graph is."""
    config = json.loads((source / "config.json").read_text()) if (source / "config.json").is_file() else {}
    hidden_size = config.get("hidden_size")
    if not isinstance(hidden_size, int) or hidden_size < 1:
        raise ValueError(f"{source}/config.json gives no hidden_size; cannot export it to ONNX")
    modules_file = source / "modules.json"
    modules = json.loads(modules_file.read_text()) if modules_file.is_file() else []
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind not in ("Transformer", "Pooling", "Normalize"):
            raise ValueError(f"{source} has a {kind} module; the ONNX export covers mean pooling only")
        if kind == "Pooling":
            pooling = json.loads((source / str(module.get("path", "")) / "config.json").read_text())
            modes = {k for k, v in pooling.items() if k.startswith("pooling_mode_") and v is True}
            if modes - {"pooling_mode_mean_tokens"} or pooling.get("word_embedding_dimension") != hidden_size:
                raise ValueError(f"{source} pools with {sorted(modes)}; the ONNX export covers mean pooling only")
    return hidden_size


def _build(source: Path, target: Path) -> None:
    dim = _exportable_dim(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        logger.info("exporting %s to ONNX under %s", source, target)
        raw = staging / "raw.onnx"
        hidden_size, num_heads = _export_fp32(source, raw)
        _optimize(raw, staging / FP32_FILE, hidden_size=hidden_size, num_heads=num_heads)
        raw.unlink()
        _quantize(staging / FP32_FILE, staging / INT8_FILE)
        manifest = {"source": str(source), "export_version": EXPORT_VERSION, "dim": dim,
                    "files": {"fp32": FP32_FILE, "int8": INT8_FILE},
                    "outputs": "sentence_embedding (mean pooled, L2-normalised)"}
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        staging.chmod(0o755)  # mkdtemp makes it private; the export is a shared asset
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / MANIFEST_FILE).is_file():  # not a concurrent export that won the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _export_fp32(source: Path, out: Path) -> tuple[int, int]:
    """Trace BERT plus mean pooling and normalisation into one graph that returns sentence embeddings."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(source), attn_implementation="eager", local_files_only=True)
    model.eval()

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    example = torch.ones((2, 16), dtype=torch.int64)
    dynamic = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            SentenceEmbedding(model), (example, example, torch.zeros_like(example)), str(out),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["sentence_embedding"],
            dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "token_type_ids": dynamic,
                          "sentence_embedding": {0: "batch"}},
            opset_version=17, dynamo=False, do_constant_folding=True,
        )
    return model.config.hidden_size, model.config.num_attention_heads


def _optimize(raw: Path, out: Path, *, hidden_size: int, num_heads: int) -> None:
    """Fuse attention, LayerNorm and GELU so the quantiser sees whole attention blocks."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(raw), model_type="bert", num_heads=num_heads,
                               hidden_size=hidden_size, opt_level=1)
    optimized.save_model_to_file(str(out))


def _quantize(fp32: Path, out: Path) -> None:
    """Dynamic int8: weights quantised offline, activations at run time (no calibration data).

    onnxruntime's DynamicQuantizeLinear takes one scale per tensor, so the encoder runs one
    text at a time: each text's activations get their own scale, whatever else is embedded.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Fused ops come from the com.microsoft domain, where shape inference cannot type every
    # tensor; they are all float32, which is what DefaultTensorType says.
    graph = onnx.load(str(fp32), load_external_data=False).graph
    keep_fp32 = [node.name for node in graph.node if node.op_type == "MatMul" and any(
        node.name.endswith(f"layer.{i}/output/dense/MatMul") for i in FP32_FFN_OUTPUT_LAYERS)]
    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True,
                     nodes_to_exclude=keep_fp32,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
