"""Export the text encoder and trained heads to ONNX, quantise the encoder to int8, and check them.

The encoder graph is the whole sentence-transformers pipeline in one call: transformer, mean
pooling over the attention mask, L2 normalisation. Its MatMul weights are quantised to int8 per
output channel by ONNX Runtime's dynamic quantisation, and the activations' scales are then fixed
from calibration texts (`onnx_scales`): with scales set per call, a text's embedding moved with
whatever shared its batch. Per channel, because a per-tensor scale is set by each weight
matrix's largest value, and MiniLM's feed-forward weights have outlier columns that leave the
rest with a handful of levels: per-tensor int8 moved some embeddings to cosine 0.80 from the
fp32 ones, per channel kept them above 0.96 at the same speed on this hardware.

Before quantisation ONNX Runtime's transformer optimiser fuses the graph: one Attention node per
layer (QAttention once quantised), SkipLayerNormalization, BiasGelu and the embedding layer norm.
It only recognises attention traced from the eager implementation, so the export switches the
model to eager attention for the trace (the numbers are the same as sdpa's). On 2 cores the fused
int8 graph embeds one short post in 2.1 ms instead of 3.5 and 4,000 posts about 10 % faster, with
the same embeddings (mean cosine to fp32 0.990 both).

Nothing here decides whether the int8 path is good enough; the checks only measure. The embedding
check (every export) compares the two runtimes on bundled texts; the score check (`score_check`,
run by training on the held-out calibration rows) compares a model's category scores and its
binary AUPRC, and the manifest keeps the result so loading can decide.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bastion.errors import ModelError
from bastion.models.encoder import TextEncoder
from bastion.models.onnx_runtime import (
    ENCODER_FILE,
    EXPORT_FILE,
    RUNTIME,
    TOKENIZER_FILE,
    EncoderExport,
    OnnxTextEncoder,
)
from bastion.models.onnx_scales import fix_activation_scales
from bastion.models.parts import file_sha256

OPSET = 17
QUANTIZATION = (
    "int8 weights per output channel, uint8 activations at fixed scales calibrated on the "
    "package's texts"
)
#: How many of the package's texts the embedding check compares runtimes on.
CHECK_TEXTS = 600
DYNAMIC_QUANTIZATION = "int8 weights per output channel, uint8 activations quantised per call"
#: Texts unlike most of the package's, so that the calibrated ranges cover them: shouting,
#: repeated punctuation, emoji, other scripts, and one text long enough to be cut.
STRETCH_TEXTS = [
    "WHY WOULD ANYONE EVER DO THIS TO ME!!!!!!!!!!!! I AM SO DONE WITH ALL OF YOU!!!!!!!",
    "lmaooooooo 😂😂😂😂😂 💀💀💀 🔥🔥🔥 bruh",
    "??????!!!!!!......,,,,,;;;;;:::::------",
    "Это сообщение написано по-русски, чтобы проверить другой алфавит.",
    "这是一条用中文写的消息，用来检查另一种文字。",
    "مرحبا، هذه رسالة مكتوبة بالعربية لاختبار نص آخر.",
    "http://example.com/a/b/c?x=1&y=2 @someone #hashtag #another_one",
    "a " * 400,
]


def calibration_texts() -> list[str]:
    """What the activation scales are calibrated on: the package's texts after the ones the
    embedding check uses, and the stretch texts."""
    return check_texts(limit=None)[CHECK_TEXTS:] + STRETCH_TEXTS


def check_texts(limit: int | None = CHECK_TEXTS) -> list[str]:
    """Texts shipped in the package (written for it) to compare runtimes on: short and long,
    benign and violating."""
    data = Path(__file__).resolve().parent.parent / "data"
    texts: list[str] = []
    for line in (data / "sample.jsonl").read_text("utf-8").splitlines():
        if line.strip():
            text = json.loads(line).get("text")
            if isinstance(text, str) and text.strip():
                texts.append(text)
    for name in ("hard_negatives_train.txt", "safe_requests_train.txt", "background.txt"):
        texts += [t for t in (data / name).read_text("utf-8").splitlines() if t.strip()]
    return texts[:limit]


def export_encoder(
    encoder: TextEncoder,
    out_dir: Path | str,
    *,
    texts: Sequence[str] | None = None,
    compress: bool = False,
    fixed_scales: bool = True,
) -> EncoderExport:
    """Write `encoder` as an int8 ONNX encoder directory (replacing what is there) and check it
    against the PyTorch encoder on `texts` (default `check_texts()`). With `compress` the graph
    is stored xz-compressed (for shipping in a package); loading unpacks it into the cache.
    `fixed_scales=False` leaves the activation scales dynamic (set per call), to compare."""
    import warnings

    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = encoder._model
    transformer, pooling = _pipeline(model)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        auto_model = transformer.auto_model
        graph = _pooled_encoder_class()(auto_model).eval()
        sample = torch.ones((2, 8), dtype=torch.long)
        fp32 = staging / "model.fp32.onnx"
        with torch.no_grad(), warnings.catch_warnings(), _eager_attention(auto_model):
            # The tracer's notes on Python control flow, and the legacy exporter's deprecation
            # notice: the dynamo exporter writes external-data files and did not fold this graph.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                (sample, sample),
                str(fp32),
                input_names=["input_ids", "attention_mask"],
                output_names=["embedding"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "tokens"},
                    "attention_mask": {0: "batch", 1: "tokens"},
                    "embedding": {0: "batch"},
                },
                opset_version=OPSET,
                dynamo=False,
            )
        fused = _fuse(fp32, auto_model.config)
        quantize_dynamic(
            fp32,
            staging / ENCODER_FILE,
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"DefaultTensorType": 1},  # FLOAT, for tensors shape inference misses
        )
        fp32.unlink()
        model.tokenizer.backend_tokenizer.save(str(staging / TOKENIZER_FILE))
        if fixed_scales:
            fix_activation_scales(
                staging / ENCODER_FILE,
                staging / TOKENIZER_FILE,
                calibration_texts(),
                encoder.max_length,
            )
        info = {
            "encoder": encoder.name,
            "dim": encoder.dim,
            "max_length": encoder.max_length,
            "pooling": pooling,
            "sha256": file_sha256(staging / ENCODER_FILE),
            "quantization": QUANTIZATION if fixed_scales else DYNAMIC_QUANTIZATION,
            "runtime": RUNTIME,
            "opset": OPSET,
            "fused": fused,
            "versions": _versions(),
            "check": {},
        }
        (staging / EXPORT_FILE).write_text(json.dumps(info, indent=2), "utf-8")
        sample_texts = list(texts) if texts is not None else check_texts()
        info["check"] = embedding_check(encoder, OnnxTextEncoder(staging), sample_texts)
        (staging / EXPORT_FILE).write_text(json.dumps(info, indent=2), "utf-8")
        if compress:
            import lzma

            graph = staging / ENCODER_FILE
            with graph.open("rb") as source, lzma.open(f"{graph}.xz", "wb", preset=9) as packed:
                shutil.copyfileobj(source, packed, 1 << 20)
            graph.unlink()
        staging.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return EncoderExport.read(out)


def embedding_check(reference: Any, candidate: Any, texts: Sequence[str]) -> dict[str, float]:
    """How far `candidate`'s embeddings are from `reference`'s on the same texts."""
    a = reference.encode(texts)
    b = candidate.encode(texts)
    cosine = np.sum(a * b, axis=1)
    return {
        "texts": float(len(texts)),
        "max_abs_diff": float(np.abs(a - b).max()),
        "min_cosine": float(cosine.min()),
        "mean_cosine": float(cosine.mean()),
    }


def export_head(head: Any, path: Path | str, dim: int) -> Path:
    """Write a trained `MultiLabelHead`'s network (logits out) as ONNX at `path`."""
    import warnings

    import torch

    module = head.model_
    module.eval()
    target = Path(path)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            module,
            (torch.zeros((1, dim), dtype=torch.float32),),
            str(target),
            input_names=["embedding"],
            output_names=["logits"],
            dynamic_axes={"embedding": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return target


def _pipeline(model: Any) -> tuple[Any, str]:
    """The transformer module and the pooling mode; only mean pooling is exported."""
    modules = list(model)
    transformer = modules[0] if modules else None
    pooling = modules[1] if len(modules) > 1 else None
    if transformer is None or not hasattr(transformer, "auto_model"):
        raise ModelError("only sentence-transformers models with a Transformer module export")
    mode = getattr(pooling, "pooling_mode", None)  # sentence-transformers >= 5
    if mode is None and getattr(pooling, "pooling_mode_mean_tokens", False):
        mode = "mean"
    if mode != "mean":
        raise ModelError(
            "only mean-pooling encoders export to ONNX; this one pools otherwise. "
            "Serve it with the PyTorch runtime (runtime='torch')."
        )
    return transformer, "mean"


@contextlib.contextmanager
def _eager_attention(model: Any) -> Iterator[None]:
    """Trace with eager attention (what the fusion recognises), then put back what was set."""
    before = getattr(model.config, "_attn_implementation", None)
    if before in (None, "eager"):
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def _fuse(path: Path, config: Any) -> dict[str, int]:
    """Fuse `path` in place with ONNX Runtime's BERT optimiser; returns the fused node counts
    (all zero when the graph's patterns were not recognised: it is then left as traced)."""
    import logging

    from onnxruntime.transformers import optimizer

    heads = int(getattr(config, "num_attention_heads", 0))
    hidden = int(getattr(config, "hidden_size", 0))
    quiet = logging.getLogger("onnxruntime.transformers")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        model = optimizer.optimize_model(
            str(path), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=1
        )
    finally:
        quiet.setLevel(level)
    counts = {k: int(v) for k, v in model.get_fused_operator_statistics().items() if v}
    model.save_model_to_file(str(path))
    return counts


def _versions() -> dict[str, str]:
    import onnxruntime
    import torch

    return {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}


def _pooled_encoder_class() -> Any:
    import torch

    class PooledEncoder(torch.nn.Module):
        """Transformer → mean over real tokens → unit length, as sentence-transformers does."""

        def __init__(self, transformer: Any) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    return PooledEncoder
