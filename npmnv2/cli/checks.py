"""The commands that check one implementation against another: `compare` and `verify`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import (
    AddParser,
    CLIError,
    check_output,
    distinct_outputs,
    files_of,
    image_paths,
    integer_model,
    integer_options,
    load_model,
    model_options,
    tflite_path,
    tolerance,
    write_output,
)
from .model import model_for, pixels_for, saved_tensors


def _progress(line: str) -> None:
    """A progress line on stderr (stdout keeps only the result)."""
    print(f"npmnv2 compare: {line}", file=sys.stderr, flush=True)


def _compare_integer(args: argparse.Namespace) -> int:
    """compare --integer --against tflite: the integer model against the interpreter's kernels (--kernels)."""
    from .. import compare, verify

    if args.against != "tflite":
        raise CLIError("--integer compares with the TFLite interpreter: use --against tflite.")
    model = integer_model(args.weights, args.kernels)
    path = tflite_path(args.weights, "--integer")
    pixels, _ = verify.tflite_input(path, image_paths([args.image])[0])  # (1, H, W, 3) uint8
    reference = verify.tflite_integer_tensors(path, pixels, kernels=args.kernels)  # the same kernel set
    from ..ops import nhwc_to_nchw

    result = compare(model.trace(nhwc_to_nchw(pixels)), reference, tolerance=0.0)
    print(repr(result))
    if result.first_divergence is None and len(result.rows) == len(model.graph.ops):
        total = sum(int(np.prod(r.shape)) for r in result.rows)
        print(
            f"exact: all {len(result.rows)} op outputs ({total:,} integers) equal the TFLite interpreter's "
            f"{args.kernels} kernels, element by element."
        )
        return 0
    return 3


def cmd_compare(args: argparse.Namespace) -> int:
    from .. import compare, verify

    if args.integer:
        return _compare_integer(args)

    if args.against == "tflite" and args.random:
        raise CLIError("--against tflite compares the .tflite's own weights: drop --random.")
    model = model_for(args)
    against = args.against
    if against == "tflite":
        path = tflite_path(args.weights, "--against tflite")
        _, pixel_values = verify.tflite_input(path, image_paths([args.image])[0])
        reference = verify.tflite_activations(path, image_paths([args.image])[0])
    else:
        pixel_values = pixels_for(args)
        if against == "torch":
            started = time.perf_counter()
            _progress("building transformers' PyTorch model with the same weights ...")
            try:
                twin = verify.transformers_twin(model)
            except ImportError:
                raise CLIError("--against torch needs PyTorch and transformers: pip install 'npmnv2[test]'") from None
            _progress(f"running it with a hook on every layer ... ({time.perf_counter() - started:.1f} s)")
            reference = verify.torch_activations(twin, pixel_values)
            _progress(
                f"tracing npmnv2 and comparing {len(reference)} tensors ... ({time.perf_counter() - started:.1f} s)"
            )
        else:
            reference = saved_tensors(against)
    result = compare(model.trace(pixel_values), reference, tolerance=args.tolerance)
    if not result.rows:
        raise CLIError(
            f"--against {against!r}: none of its {len(reference)} tensors has a step name of this model "
            f"(e.g. {model.step_names()[0]!r}), so nothing was compared; save tensors under npmnv2's step names."
        )
    print(repr(result))
    return 0 if result.first_divergence is None else 3


def cmd_verify(args: argparse.Namespace) -> int:
    """verify: another implementation against the spec, op by op; exit 3 when an op is wrong on its own,
    4 when nothing is wrong but part of the port could not be checked (inconclusive)."""
    from .. import verify

    peer: Any = args.peer
    path = Path(peer)
    if not path.exists():
        raise CLIError(
            f"peer {peer!r} does not exist; give an .onnx, .tflite, .keras or .npz file or a folder of .npy."
        )
    # Every output is checked before any work: never a folder, a wrong type, one of the inputs, or twice.
    from ..checkpoints import resolve_checkpoint

    inputs = files_of(path) + files_of(Path(args.image))
    for source in (args.model, args.reference):
        if source:
            inputs += files_of(resolve_checkpoint(source))
    if args.figure:
        check_output(args.figure, {".png", ".pdf", ".svg", ".jpg", ".jpeg"}, "--figure", inputs=inputs)
    if args.model_explorer:
        check_output(args.model_explorer, {".json"}, "--model-explorer", inputs=inputs)
    distinct_outputs(("--figure", args.figure), ("--model-explorer", args.model_explorer))
    image = image_paths([args.image])[0]
    model = None
    if args.model:
        model = load_model(args.model, "auto")
    report = verify.check(peer, image, config=args.config, model=model, reference=args.reference)
    print(repr(report))
    if args.figure:
        figure = report.figure()
        write_output(args.figure, lambda f: figure.savefig(f, dpi=100, format=Path(args.figure).suffix[1:] or "png"))
        print(f"wrote {args.figure}")
    if args.model_explorer:
        report.to_model_explorer(args.model_explorer)
        print(f"wrote {args.model_explorer} (node data for AI Edge Model Explorer)")
    return {"faithful": 0, "diverges": 3, "inconclusive": 4}[report.status]


def verify_parser(add: AddParser) -> None:
    p = add(
        "verify",
        "verify another implementation op by op: the first op wrong on its own and its cause (exit 3; 4: inconclusive)",
        "npmnv2 verify port.onnx cat.jpg --config transformers --figure errors.png",
    )
    p.add_argument("peer", metavar="PEER", help="the port: an .onnx, .tflite, .keras or .npz file, or a folder of .npy")
    p.add_argument("image", metavar="IMAGE", help="the image both run on")
    p.add_argument(
        "--config",
        default="transformers",
        choices=["transformers", "torchvision", "keras"],
        help="the spec the port implements (default transformers)",
    )
    p.add_argument("--model", metavar="SRC", help="npmnv2's weights, for a peer that exposes none (saved tensors)")
    p.add_argument(
        "--reference",
        metavar="CHECKPOINT",
        help="the checkpoint the port was converted from: its weights are compared layer by layer and a "
        "conversion bug is named (kernel transposed or flipped, channels permuted, weights of another layer, "
        "batch-norm statistics swapped or missing, background class dropped)",
    )
    p.add_argument("--figure", metavar="FILE.png", help="write the total and local error per op")
    p.add_argument("--model-explorer", metavar="FILE.json", help="write a node-data overlay for Model Explorer")
    p.set_defaults(func=cmd_verify)


def compare_parser(add: AddParser) -> None:
    p = add(
        "compare",
        "compare npmnv2 layer by layer with PyTorch, TFLite or saved tensors (exit 3 on divergence)",
        "npmnv2 compare cat.bmp --weights mobilenet_v2_1.0_224_quant.tflite --against tflite --tolerance 0.5",
    )
    p.add_argument("image", metavar="IMAGE", help="the image file")
    model_options(p)
    p.add_argument("--against", required=True, help="'torch' (transformers), 'tflite' (the interpreter) or a .npz file")
    p.add_argument(
        "--tolerance",
        type=tolerance,
        default=None,
        help="max |diff| / max(1, max |reference|) (default: 1e-4 against torch or a .npz; against tflite, "
        "differences are judged against the integer model's quantization noise unless this is given)",
    )
    integer_options(
        p, "with --against tflite: the integer model against the interpreter's kernels (--kernels), exactly"
    )
    p.set_defaults(func=cmd_compare)
