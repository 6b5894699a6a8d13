"""The commands on a model itself: `convert` (to a transformers checkpoint), `summary` (its layers and MACs)
and `trace` (every intermediate tensor, float or integer).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..data_files import DEFAULT_MODEL
from ..tables import format_table
from .common import (
    WEIGHTS_HELP,
    AddParser,
    CLIError,
    check_output,
    files_of,
    image_paths,
    integer_model,
    integer_options,
    load_model,
    model_options,
    say_default,
    write_output,
)


def cmd_convert(args: argparse.Namespace) -> int:
    from ..formats import PYTORCH_NAME
    from ..formats.atomic import write_folder
    from ..image_processing_mobilenet_v2 import MobileNetV2ImageProcessor

    dest = Path(args.dest)
    if dest.exists() and not dest.is_dir():
        raise CLIError(f"destination {str(dest)!r} is a file; give a folder (it is created if missing).")
    if dest.exists() and any(dest.iterdir()) and not args.overwrite:
        raise CLIError(f"destination {str(dest)!r} is not empty; choose an empty folder or pass --overwrite.")
    from ..checkpoints import resolve_checkpoint

    source = resolve_checkpoint(args.source)
    source_folder = source if source.is_dir() else source.parent
    if dest.exists() and (dest.samefile(source_folder) or any(dest.samefile(f) for f in files_of(source_folder))):
        raise CLIError(
            f"destination {str(dest)!r} holds the source {args.source!r}; converting there would replace or delete "
            "it. Give another folder."
        )
    model = load_model(args.source, args.task)
    files = {**model.checkpoint_files(), **MobileNetV2ImageProcessor.from_pretrained(args.source).checkpoint_files()}
    # all three files or none; an old pytorch_model.bin would shadow the new weights for some loaders
    write_folder(dest, files, remove=(PYTORCH_NAME,) if args.overwrite else ())
    config = {k: v for k, v in model.config.to_dict().items() if k not in ("id2label", "label2id")}
    print(f"converted {args.source} -> {dest} as {type(model).__name__}")
    print(json.dumps({**config, "num_labels": model.config.num_labels}, indent=2, sort_keys=True))
    print(f"parameters: {model.num_parameters():,}")
    return 0


ARCHITECTURE_FLAGS = ("depth_multiplier", "output_stride", "num_labels", "depth_divisible_by", "task")


def model_for(args: argparse.Namespace) -> Any:
    """The model of summary / trace / compare: from --weights (default: the embedded classifier; the
    class is chosen by the head), or, with --random, random weights built from the architecture
    flags, announced on stdout so that nobody mistakes their numbers for a trained model's."""
    from .. import MobileNetV2Config, MobileNetV2ForImageClassification, MobileNetV2ForSemanticSegmentation

    given = [f"--{f.replace('_', '-')}" for f in ARCHITECTURE_FLAGS if getattr(args, f) is not None]
    if not args.random:
        if given:
            verb, them = ("applies", "it") if len(given) == 1 else ("apply", "them")
            raise CLIError(
                f"{', '.join(given)} only {verb} to a randomly initialised model: add --random, or drop {them} to "
                "use the architecture of --weights."
            )
        weights = args.weights or DEFAULT_MODEL
        say_default(weights)
        return load_model(weights, "auto")
    if args.weights:
        raise CLIError("--random and --weights exclude each other: choose trained weights or random ones.")
    task = args.task or "classification"
    classes = {"classification": MobileNetV2ForImageClassification, "segmentation": MobileNetV2ForSemanticSegmentation}
    config = MobileNetV2Config(
        depth_multiplier=1.0 if args.depth_multiplier is None else args.depth_multiplier,
        output_stride=32 if args.output_stride is None else args.output_stride,
        num_labels=(21 if task == "segmentation" else 1001) if args.num_labels is None else args.num_labels,
        depth_divisible_by=8 if args.depth_divisible_by is None else args.depth_divisible_by,
    )
    model = classes[task](config, seed=args.seed)
    print(
        f"random weights (--random, seed {args.seed}): {type(model).__name__}, depth multiplier "
        f"{config.depth_multiplier}, output stride {config.output_stride}, {config.num_labels} labels; "
        "its outputs mean nothing, only its shapes and counts do"
    )
    return model


def cmd_summary(args: argparse.Namespace) -> int:
    model = model_for(args)
    size = args.image_size or list(model.config.image_hw)
    if len(size) > 2:
        raise CLIError(f"--image-size takes H or H W, got {size}.")
    summary = model.summary(size[0] if len(size) == 1 else (size[0], size[1]))
    print(repr(summary))
    return 0


def pixels_for(args: argparse.Namespace) -> np.ndarray:
    """The image as the model of `model_for` takes it (transformers' default preprocessing with --random)."""
    from ..image_processing_mobilenet_v2 import MobileNetV2ImageProcessor

    if args.random:
        processor = MobileNetV2ImageProcessor()
    else:
        processor = MobileNetV2ImageProcessor.from_pretrained(args.weights or DEFAULT_MODEL)
    return processor(image_paths([args.image])[0])["pixel_values"]


def cmd_trace(args: argparse.Namespace) -> int:
    if args.save:
        check_output(args.save, {".npz"}, "--save", inputs=[Path(args.image)])
    if args.integer:
        return _trace_integer(args)
    model = model_for(args)
    trace = model.trace(pixels_for(args), layers=args.layers or None, stop_at=args.stop_at)
    print(trace.format(kept_only=bool(args.layers)))
    if args.save:
        write_output(args.save, lambda f: np.savez(f, **{name: trace[name] for name in trace}))
        print(f"wrote {len(trace)} tensors (NCHW) to {args.save}")
    return 0


def saved_tensors(name: str) -> dict[str, np.ndarray]:
    """The tensors of an .npz file (never unpickled, read within a size budget), or a clear error."""
    from ..formats.errors import WeightFileError
    from ..formats.saved_arrays import read_npz

    path = Path(name)
    if not path.is_file():
        raise CLIError(f"--against {name!r}: expected 'torch', 'tflite' or an existing .npz file.")
    if path.suffix == ".npy" or path.read_bytes()[:6] == b"\x93NUMPY":
        raise CLIError(
            f"--against {name!r} is a single unnamed .npy array; compare matches tensors by step name, so save them "
            "with np.savez(file, **{step_name: array}) (see `npmnv2 trace --save`)."
        )
    try:
        tensors = read_npz(path, "--against file")
    except WeightFileError as err:
        raise CLIError(str(err)) from None
    if not tensors:
        raise CLIError(f"--against {name!r} holds no tensors, so there is nothing to compare.")
    return tensors


def _trace_integer(args: argparse.Namespace) -> int:
    """trace --integer: every op of the quantized file, with its scale, zero point and saturation counts."""
    from ..image_processing_mobilenet_v2 import MobileNetV2ImageProcessor

    model = integer_model(args.weights, args.kernels)
    raw = MobileNetV2ImageProcessor.from_pretrained(args.weights).integer_pixels(image_paths([args.image])[0])
    trace = model.trace(model.input_from_pixels(raw), layers=args.layers or None, stop_at=args.stop_at)
    head = ["step", "float step", "shape", "scale", "zero point", "min", "max", "at min", "at max"]
    rows = [head]
    for step in trace.steps:
        a = step.attrs
        scale = a.get("scale")
        if scale is None:
            scale_text = "-"
        else:
            scale_text = f"{scale:.6g}" if np.ndim(scale) == 0 else f"per channel ({len(scale)})"
        zp = a.get("zero_point")
        zp_text = "-" if zp is None else (str(zp) if np.ndim(zp) == 0 else "per channel")
        low, high = a.get("range", (None, None))
        total = int(np.prod(step.output_shape))
        rows.append(
            [
                step.name,
                a.get("float_step") or "-",
                "x".join(map(str, step.output_shape)),
                scale_text,
                zp_text,
                str(low),
                str(high),
                f"{a.get('at_min', 0) / total:.1%}",
                f"{a.get('at_max', 0) / total:.1%}",
            ]
        )
    print(format_table(rows))
    print(f"{len(trace.steps)} integer steps; at min / at max: the share of values on the edges of the output range")
    if args.save:
        write_output(args.save, lambda f: np.savez(f, **{name: trace[name] for name in trace}))
        print(f"wrote {len(trace)} integer tensors (NCHW) to {args.save}")
    return 0


def convert_parser(add: AddParser) -> None:
    p = add(
        "convert",
        "convert any supported weights to a transformers checkpoint folder",
        "npmnv2 convert deeplabv3_mnv2_pascal_quant.tflite deeplab-hf/",
    )
    p.add_argument("source", metavar="SOURCE", help=WEIGHTS_HELP)
    p.add_argument("dest", metavar="DEST_DIR", help="folder to write config.json + model.safetensors into")
    p.add_argument(
        "--task",
        choices=["auto", "classification", "segmentation", "backbone"],
        default="auto",
        help="which model class to save (default: from the source's head)",
    )
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty DEST_DIR")
    p.set_defaults(func=cmd_convert)


def summary_parser(add: AddParser) -> None:
    p = add(
        "summary",
        "per-layer output shapes, parameters, MACs and activation memory",
        "npmnv2 summary --image-size 224      (or: --random --depth-multiplier 0.5)",
    )
    model_options(p)
    p.add_argument("--image-size", type=int, nargs="+", metavar="N", help="H [W] (default: the model's image_size)")
    p.set_defaults(func=cmd_summary)


def trace_parser(add: AddParser) -> None:
    p = add(
        "trace",
        "run one image and print every step (name, kind, shape, MACs, value statistics)",
        "npmnv2 trace cat.bmp --weights mobilenet_v2_1.0_224_quant.tflite --layers 'layer.*' --save acts.npz",
    )
    p.add_argument("image", metavar="IMAGE", help="the image file")
    model_options(p)
    p.add_argument("--layers", nargs="+", metavar="PATTERN", help="names or glob patterns of the tensors to keep")
    p.add_argument("--stop-at", metavar="NAME", help="stop right after this step")
    p.add_argument("--save", metavar="FILE.npz", help="write the kept tensors (NCHW) to an .npz file")
    integer_options(p, "trace the quantized .tflite's integer ops (scale, zero point, saturation counts per step)")
    p.set_defaults(func=cmd_trace)
