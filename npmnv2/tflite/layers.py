"""Which transformers layer each op of a TFLite MobileNetV2 / DeepLabV3 graph is, found from the
graph's structure (`match_layers`: op kinds, kernel sizes and how tensors connect; tensor names differ
between exporters and are never relied on), its residual ADDs (`residual_adds`), and every op named
in the float model's vocabulary (`integer_steps`, for the integer model).
"""

from __future__ import annotations

from ..formats.errors import WeightFileError
from .graph import TFLiteGraph
from .ops import (
    CONV_2D,
    DEQUANTIZE,
    QUANTIZE,
    RESIZE_BILINEAR,
    has,
    op_is,
    tflite_op,
)


def match_layers(graph: TFLiteGraph) -> dict[int, str]:
    """Which transformers module each weighted op of a MobileNetV2 / DeepLabV3 graph is, found from
    the graph's structure (op types, kernel sizes and how tensors connect), not from tensor names,
    which differ between exporters (TF-slim, TF2/Keras) and are often several fused names.

    Backbone: a 3x3 stride-2 CONV_2D stem, its depthwise conv (optionally after a 1x1 expansion)
    and its 1x1 projection, then 16 blocks of 1x1 expansion, depthwise conv and 1x1 projection:
    17 DEPTHWISE_CONV_2D in all, each followed by its projection. Head: for a classifier, a 1x1
    conv (`conv_1x1`), pooling, and a 1x1 conv or FULLY_CONNECTED (`classifier`); for DeepLabV3,
    the conv that reads the pooled features (`conv_pool`), the other conv that reads the backbone
    output (`conv_aspp`), the conv that reads the concatenation (`conv_projection`) and the one after it.
    Returns {op index: module path}; raises WeightFileError when the graph has another structure.
    """
    weighted = [i for i, op in enumerate(graph.ops) if has(op, "weighted")]
    depthwise = [i for i in weighted if has(graph.ops[i], "depthwise")]
    if len(depthwise) != 17 or not weighted or not op_is(graph.ops[weighted[0]], CONV_2D):
        raise WeightFileError(
            f"{graph.where}: not a MobileNetV2 graph npmnv2 knows: expected a CONV_2D stem and 17 depthwise "
            f"convolutions, found {len(depthwise)} depthwise among {len(weighted)} weighted ops."
        )
    names: dict[int, str] = {weighted[0]: "conv_stem.first_conv"}
    before_first_dw = [i for i in weighted if weighted[0] < i < depthwise[0]]
    if len(before_first_dw) > 1:
        raise WeightFileError(f"{graph.where}: unexpected layers between the stem conv and its depthwise conv.")
    if before_first_dw:  # first_layer_is_expansion=False: a 1x1 expansion before the stem's depthwise conv
        names[before_first_dw[0]] = "conv_stem.expand_1x1"
    for block, dw in enumerate(depthwise):
        prefix = "conv_stem" if block == 0 else f"layer.{block - 1}"
        position = weighted.index(dw)
        if position + 1 >= len(weighted):
            raise WeightFileError(f"{graph.where}: the depthwise conv of {prefix} has no projection after it.")
        names[dw] = f"{prefix}.conv_3x3"
        names[weighted[position + 1]] = f"{prefix}.reduce_1x1"
        if block:
            names[weighted[position - 1]] = f"{prefix}.expand_1x1"
    backbone_out = graph.ops[weighted[weighted.index(depthwise[-1]) + 1]]["outputs"][0]
    head = [i for i in weighted if i not in names]
    producer = {t: i for i, op in enumerate(graph.ops) for t in op["outputs"]}
    if any(has(op, "joins") for op in graph.ops):  # DeepLabV3
        if len(head) != 4:
            raise WeightFileError(f"{graph.where}: a DeepLabV3 head has 4 convolutions, this one {len(head)}.")
        reads_backbone = [i for i in head if graph.ops[i]["inputs"][0] == backbone_out]
        reads_pool = [i for i in head if has(graph.ops[producer.get(graph.ops[i]["inputs"][0], -1)], "pools")]
        reads_concat = [i for i in head if has(graph.ops[producer.get(graph.ops[i]["inputs"][0], -1)], "joins")]
        if len(reads_backbone) != 1 or len(reads_pool) != 1 or len(reads_concat) != 1:
            raise WeightFileError(f"{graph.where}: the DeepLabV3 head is not wired as image pool + 1x1 branch.")
        last = [i for i in head if i not in (*reads_backbone, *reads_pool, *reads_concat)]
        names.update(
            {
                reads_pool[0]: "segmentation_head.conv_pool",
                reads_backbone[0]: "segmentation_head.conv_aspp",
                reads_concat[0]: "segmentation_head.conv_projection",
                last[0]: "segmentation_head.classifier",
            }
        )
        return names
    if len(head) == 1:  # no final 1x1 conv before the pool (not a MobileNetV2 classifier npmnv2 knows)
        raise WeightFileError(f"{graph.where}: expected a 1x1 conv before the classifier's pooling.")
    if len(head) != 2:
        raise WeightFileError(
            f"{graph.where}: expected 2 layers after the backbone (conv_1x1, classifier), found {len(head)}."
        )
    names[head[0]] = "conv_1x1"
    names[head[1]] = "classifier"
    return names


def residual_adds(graph: TFLiteGraph, names: dict[int, str]) -> dict[int, str]:
    """{op index: block name} of the residual ADD ops. An ADD reads the block's input and its
    projection; the input may itself be the previous block's projection, so the block is the one
    whose projection ran last."""
    producer = {t: i for i, op in enumerate(graph.ops) for t in op["outputs"]}
    adds = {}
    for i, op in enumerate(graph.ops):
        if not has(op, "adds"):
            continue
        projections = [producer[t] for t in op["inputs"] if names.get(producer.get(t, -1), "").endswith(".reduce_1x1")]
        if projections:
            adds[i] = names[max(projections)].removesuffix(".reduce_1x1")
    return adds


def integer_steps(graph: TFLiteGraph) -> list[tuple[str, str, str | None]]:
    """(step name, kind, float step) of every op of the graph, in its order, named as the float
    model names its steps: a conv op of layer X is `X.convolution` (its output is the float step
    `X.activation`, or `X.normalization` for a linear layer), the residual ADD of block N is
    `layer.N`, the pooling op `pooler`; ops the float model has no step for keep a plain name
    (`reshape`, `softmax`, `quantize_input`, `segmentation_head.upsample`, `argmax`)."""
    names = match_layers(graph)
    adds = residual_adds(graph, names)
    segmentation = any(n.startswith("segmentation_head.") for n in names.values())
    input_index = graph.graph.Inputs(0)
    steps: list[tuple[str, str, str | None]] = []
    resized = False
    for index, op in enumerate(graph.ops):
        row = tflite_op(op)  # every op has a row: the validator refuses the others before a graph exists
        kind, float_step = row.step_kind, None
        if index in names:
            hf = names[index]
            fused = f"{hf}.activation" if op.get("activation") else f"{hf}.normalization"
            name = "classifier" if hf == "classifier" else f"{hf}.convolution"
            kind = "linear" if hf == "classifier" else kind  # a 1x1 conv classifier is the float model's linear
            float_step = {"classifier": "classifier", "segmentation_head.classifier": name}.get(hf, fused)
        elif index in adds:
            name = float_step = adds[index]
        elif has(op, "pools"):
            name = float_step = "segmentation_head.avg_pool" if segmentation else "pooler"
        elif op_is(op, RESIZE_BILINEAR):
            name = "segmentation_head.upsample" if resized else "segmentation_head.interpolate"
            float_step = None if resized else name
            resized = True
        elif has(op, "joins"):
            name = float_step = "segmentation_head.concat"
        elif op_is(op, QUANTIZE):
            name = "quantize_input" if op["inputs"][0] == input_index else "quantize_output"
        elif op_is(op, DEQUANTIZE):
            name = "dequantize_output"
        else:
            name = row.plain_name
        taken = {n for n, _, _ in steps}
        steps.append((name if name not in taken else f"{name}.{index}", kind, float_step))
    return steps
