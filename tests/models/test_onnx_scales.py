"""Fixed activation scales for the int8 encoder: a text's embedding no longer depends on what
shares its batch, and stays as close to PyTorch's as the dynamic export's."""

from __future__ import annotations

import collections
import shutil

import numpy as np
import onnx
import pytest

from bastion.models.encoder import TextEncoder, load_encoder
from bastion.models.onnx_export import check_texts, export_encoder
from bastion.models.onnx_runtime import ENCODER_FILE, EXPORT_FILE, TOKENIZER_FILE, OnnxTextEncoder
from bastion.models.onnx_scales import fix_activation_scales

TEXTS = [
    "I will find you after school and you will regret it",
    "lovely sunset over the harbour tonight",
    "ok",
    "you people are vermin and should be driven out of this country",
]
# Neighbours that stretch a batch's activation range: long, shouting, emoji, another script.
NEIGHBOURS = [
    "WHY WOULD ANYONE DO THIS!!!!!!!!!! " * 12,
    "🔥🔥🔥💀💀💀 " * 20,
    "Это сообщение написано по-русски, чтобы проверить другой алфавит и длинные слова.",
    "The committee met again on Tuesday to review the budget, the parking plan, the library's "
    "opening hours and the long list of complaints about the new bus timetable. " * 3,
]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> tuple[OnnxTextEncoder, OnnxTextEncoder]:
    """all-MiniLM-L6-v2 exported with per-call scales, and a copy of it with fixed ones."""
    dynamic_dir = tmp_path_factory.mktemp("dynamic") / "export"
    export_encoder(load_encoder(None), dynamic_dir, fixed_scales=False)
    fixed_dir = tmp_path_factory.mktemp("fixed")
    for name in (ENCODER_FILE, TOKENIZER_FILE, EXPORT_FILE):
        shutil.copy(dynamic_dir / name, fixed_dir / name)
    fixed = fix_activation_scales(
        fixed_dir / ENCODER_FILE, fixed_dir / TOKENIZER_FILE, check_texts(200), 256
    )
    assert fixed == 24  # the embedding output, and per layer: attention in/out, FFN in/out
    # Fixing a graph with nothing dynamic left changes nothing.
    assert fix_activation_scales(fixed_dir / ENCODER_FILE, fixed_dir / TOKENIZER_FILE, [], 256) == 0
    return OnnxTextEncoder(dynamic_dir), OnnxTextEncoder(fixed_dir)


def test_every_dynamic_quantisation_is_fixed_and_the_fusion_is_kept(
    exports: tuple[OnnxTextEncoder, OnnxTextEncoder],
) -> None:
    _, fixed = exports
    ops = collections.Counter(n.op_type for n in onnx.load(str(fixed.model_file)).graph.node)
    assert ops["DynamicQuantizeLinear"] == 0 and ops["QuantizeLinear"] == 24
    assert ops["MatMulIntegerToFloat"] == 18 and ops["MatMulInteger"] == 0
    assert ops["QAttention"] == 6 and ops["SkipLayerNormalization"] == 12


def test_a_text_embeds_the_same_alone_and_in_any_batch(
    exports: tuple[OnnxTextEncoder, OnnxTextEncoder],
) -> None:
    dynamic, fixed = exports

    def alone_vs_batched(encoder: OnnxTextEncoder) -> float:
        alone = np.vstack([encoder.encode([t]) for t in TEXTS])
        batched = encoder.encode(TEXTS + NEIGHBOURS)[: len(TEXTS)]
        return float(np.abs(alone - batched).max())

    assert alone_vs_batched(fixed) < 1e-5
    assert alone_vs_batched(dynamic) > 1e-3  # what the fixed scales remove


def test_fixed_scales_are_as_close_to_pytorch_as_the_dynamic_export(
    exports: tuple[OnnxTextEncoder, OnnxTextEncoder],
) -> None:
    dynamic, fixed = exports
    texts = TEXTS + NEIGHBOURS + check_texts(400)[200:]  # mostly beyond the calibration texts
    reference = TextEncoder().encode(texts)
    to_dynamic = np.sum(dynamic.encode(texts) * reference, axis=1)
    to_fixed = np.sum(fixed.encode(texts) * reference, axis=1)
    # int8 costs both the same: "ok" (3 tokens) is the farthest for each, at about 0.956.
    assert to_fixed.min() > to_dynamic.min() - 0.01
    assert to_fixed.mean() > to_dynamic.mean() - 0.002 and to_fixed.mean() > 0.99
