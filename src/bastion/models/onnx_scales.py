"""Fixed activation scales for a dynamically quantised encoder: one text, one embedding.

`quantize_dynamic` leaves a DynamicQuantizeLinear in front of each int8 MatMul and attention
node. It takes its scale from the minimum and maximum of the whole tensor it quantises, which
holds every text of the call (and their padding). So a text's embedding, and its verdict, moves
with whatever shares its batch: on the shipped model, 26 of 600 Davidson posts were flagged
differently alone than in one call together (2026-12-07, RESULTS).

`fix_activation_scales` replaces each of those nodes with a QuantizeLinear at a fixed range, the
minimum and maximum that tensor reached over the real tokens (not padding) of calibration
texts, and fuses each MatMulInteger → Cast → Mul that follows into one MatMulIntegerToFloat.
The graph keeps ONNX Runtime's transformer fusion (quantisation happens after it), which a QDQ
export made by `quantize_static` loses. A value beyond the calibrated range saturates, so the
calibration texts should be as varied as what the service will read.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bastion.models.onnx_runtime import (
    MAX_ITEMS,
    MAX_TOKENS,
    encoder_tokenizer,
    padded_batches,
    session_options,
)

if TYPE_CHECKING:
    from onnx import NodeProto

UINT8_LEVELS = 255


def activation_ranges(
    model_file: Path, tokenizer_file: Path, texts: Sequence[str], max_length: int
) -> dict[str, tuple[float, float]]:
    """Per tensor that a DynamicQuantizeLinear reads: the (min, max) it reaches over the real
    tokens of `texts`, widened to include 0 as uint8 asymmetric quantisation does."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    probe = onnx.load(str(model_file))
    inputs = [n.input[0] for n in probe.graph.node if n.op_type == "DynamicQuantizeLinear"]
    for name in inputs:
        probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    session = ort.InferenceSession(
        probe.SerializeToString(), session_options(), providers=["CPUExecutionProvider"]
    )
    tokenizer = encoder_tokenizer(tokenizer_file, max_length)
    low = dict.fromkeys(inputs, 0.0)
    high = dict.fromkeys(inputs, 0.0)
    for _, ids, mask in padded_batches(tokenizer, texts, MAX_TOKENS, MAX_ITEMS):
        real = mask.astype(bool)
        for name, value in zip(
            inputs, session.run(inputs, {"input_ids": ids, "attention_mask": mask}), strict=True
        ):
            if value.ndim == 3 and value.shape[:2] == real.shape:
                value = value[real]  # padding positions are masked out downstream
            low[name] = min(low[name], float(value.min()))
            high[name] = max(high[name], float(value.max()))
    return {name: (low[name], high[name]) for name in inputs}


def fix_activation_scales(
    model_file: Path, tokenizer_file: Path, texts: Sequence[str], max_length: int
) -> int:
    """Rewrite `model_file` in place with fixed activation scales calibrated on `texts`;
    returns how many quantisation points were fixed (0: the graph had none)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(model_file))
    if not any(n.op_type == "DynamicQuantizeLinear" for n in model.graph.node):
        return 0
    ranges = activation_ranges(model_file, tokenizer_file, texts, max_length)
    graph = model.graph
    nodes: list[NodeProto] = []
    for node in graph.node:
        if node.op_type != "DynamicQuantizeLinear":
            nodes.append(node)
            continue
        low, high = ranges[node.input[0]]
        scale = np.float32(max(high - low, 1e-8) / UINT8_LEVELS)
        zero = np.uint8(np.clip(round(-low / float(scale)), 0, UINT8_LEVELS))
        quantised, scale_name, zero_name = node.output
        graph.initializer.append(numpy_helper.from_array(np.array(scale), scale_name))
        graph.initializer.append(numpy_helper.from_array(np.array(zero), zero_name))
        nodes.append(
            helper.make_node(
                "QuantizeLinear",
                [node.input[0], scale_name, zero_name],
                [quantised],
                name=f"{node.name}_fixed",
            )
        )
    del graph.node[:]
    graph.node.extend(_to_float_matmuls(nodes))
    onnx.save(model, str(model_file))
    return len(ranges)


def _to_float_matmuls(nodes: list[NodeProto]) -> list[NodeProto]:
    """MatMulInteger → Cast → Mul(a_scale × b_scale) as one MatMulIntegerToFloat, which ONNX
    Runtime fuses itself only after a DynamicQuantizeLinear."""
    from onnx import helper

    consumers: dict[str, list[NodeProto]] = collections.defaultdict(list)
    producer: dict[str, NodeProto] = {}
    for node in nodes:
        for name in node.input:
            consumers[name].append(node)
        for name in node.output:
            producer[name] = node
    replaced: dict[int, NodeProto] = {}
    dropped: set[int] = set()
    for matmul in (n for n in nodes if n.op_type == "MatMulInteger"):
        chain = consumers[matmul.output[0]]
        if len(chain) != 1 or chain[0].op_type != "Cast":
            continue
        cast = chain[0]
        after = consumers[cast.output[0]]
        if len(after) != 1 or after[0].op_type != "Mul":
            continue
        mul = after[0]
        scales = producer.get(mul.input[1])
        if scales is None or scales.op_type != "Mul" or len(consumers[scales.output[0]]) != 1:
            continue
        a, b, a_zero, b_zero = matmul.input
        a_scale, b_scale = scales.input
        replaced[id(matmul)] = helper.make_node(
            "MatMulIntegerToFloat",
            [a, b, a_scale, b_scale, a_zero, b_zero],
            [mul.output[0]],
            name=f"{matmul.name}_to_float",
            domain="com.microsoft",
        )
        dropped.update({id(cast), id(mul), id(scales)})
    return [replaced.get(id(n), n) for n in nodes if id(n) not in dropped]
