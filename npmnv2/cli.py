"""The `npmnv2` command line: classify, segment, convert, summary, trace, compare.

Every error is one line on stderr and a non-zero exit code; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from .data_files import BASE_URL, DEFAULT_MODEL
from .tables import format_table, printable

DEFAULT_CLASSIFIER = DEFAULT_MODEL  # the Coral uint8 classifier shipped inside the package
DEFAULT_SEGMENTER = "google/deeplabv3_mobilenet_v2_1.0_513"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}

EPILOG = """examples:
  npmnv2 classify photo.jpg                     (the embedded Coral classifier)
  npmnv2 classify photo.jpg --weights google/mobilenet_v2_1.0_224
  npmnv2 data fetch                             (the public models and photos the tests and notebooks use)
  npmnv2 segment photo.jpg --weights ~/.cache/npmnv2/deeplabv3_mnv2_pascal_quant.tflite -o overlay.png
  npmnv2 explain photo.jpg --weights ../shared/data/coral/mobilenet_v2_1.0_224_quant.tflite -o gradcam.png
  npmnv2 convert mobilenet_v2_1.0_224_quant.tflite converted/
  npmnv2 summary --depth-multiplier 1.0 --image-size 224
  npmnv2 trace cat.bmp --weights mobilenet_v2_1.0_224_quant.tflite --layers 'layer.*' --save acts.npz
  npmnv2 compare cat.bmp --weights mobilenet_v2_1.0_224_quant.tflite --against torch
"""


class CLIError(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


# ============================================================================ shared helpers


def _load_model(source: str, task: str) -> Any:
    """Read `source` once and load it as the model class of `task` ("auto": the one its head fits).

    A checkpoint without the task's head is an error here, not a warning.
    """
    from . import MobileNetV2ForImageClassification, MobileNetV2ForSemanticSegmentation, MobileNetV2Model
    from .checkpoints import read_source, resolve_checkpoint
    from .warnings import NpMnV2Warning

    classes = {
        "classification": MobileNetV2ForImageClassification,
        "segmentation": MobileNetV2ForSemanticSegmentation,
        "backbone": MobileNetV2Model,
    }
    checkpoint = read_source(resolve_checkpoint(source))
    if task == "auto":
        task = _task_of(checkpoint.tensors)
    if task == "backbone":  # every checkpoint holds a backbone; a head it also holds is left out on purpose
        has = _task_of(checkpoint.tensors)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NpMnV2Warning)
            model = classes["backbone"].from_checkpoint(checkpoint)
        if has != "backbone":
            print(
                f"npmnv2: kept the backbone of {source}; its {has} head is left out (--task backbone)", file=sys.stderr
            )
        return model
    with warnings.catch_warnings():
        warnings.simplefilter("error", NpMnV2Warning)
        try:
            return classes[task].from_checkpoint(checkpoint)
        except NpMnV2Warning:
            has = _task_of(checkpoint.tensors)
            labels = (checkpoint.config or {}).get("num_labels", (checkpoint.config or {}).get("id2label"))
            if has == task:  # the right head, but the config does not describe it
                raise CLIError(
                    f"the weights {source!r} have a {task} head, but their config.json says num_labels="
                    f"{labels if not isinstance(labels, dict) else len(labels)!r}, which does not fit it; fix "
                    "num_labels (or id2label) in config.json."
                ) from None
            raise CLIError(
                f"the weights {source!r} have no {task} head (their head is for {has}); pick weights made for {task}."
            ) from None


def _task_of(tensors: dict[str, np.ndarray]) -> str:
    """classification / segmentation / backbone, from which head's tensors a checkpoint holds."""
    if any(k.startswith("segmentation_head.") for k in tensors):
        return "segmentation"
    if any(k.startswith("classifier.") for k in tensors):
        return "classification"
    return "backbone"


def _image_paths(items: Sequence[str]) -> list[Path]:
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise CLIError(f"folder {item!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
            paths.extend(found)
        elif not path.exists():
            raise CLIError(f"image {item!r} does not exist.")
        else:
            paths.append(path)
    return paths


def _batches(items: list[Any], size: int, *, progress: bool) -> Iterator[list[Any]]:
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    if progress and len(chunks) > 1:
        from tqdm import tqdm

        yield from tqdm(chunks, desc="classifying", unit="batch", file=sys.stderr)
        return
    yield from chunks


SEGMENT_WORKING_SIZE = 1024  # the longest side at which `segment` computes its class map


def _check_output(name: str, suffixes: set[str], option: str, *, inputs: Sequence[Path] = ()) -> Path:
    """Refuse an output path before any work is done: a folder, a missing parent folder, an
    unknown file type, or one of the command's own input files."""
    path = Path(name)
    if path.is_dir():
        example = str(path / f"out{min(suffixes)}")
        raise CLIError(f"{option} {name!r} is a folder; give a file name such as {example!r}.")
    if path.suffix.lower() not in suffixes:
        raise CLIError(f"{option} {name!r} needs one of the file types {', '.join(sorted(suffixes))}.")
    if not path.parent.is_dir():
        raise CLIError(f"{option} {name!r}: the folder {str(path.parent)!r} does not exist; create it first.")
    for other in inputs:
        if path.exists() and other.exists() and path.samefile(other):
            raise CLIError(f"{option} {name!r} is the input file {str(other)!r}; writing there would destroy it.")
    return path


def _files_of(path: Path) -> list[Path]:
    """A file, or the files directly inside a folder: what an output must never overwrite."""
    if path.is_dir():
        return [p for p in path.iterdir() if p.is_file()]
    return [path] if path.exists() else []


def _write_output(path: str, render: Callable[[io.BytesIO], None]) -> None:
    """Write an output file the safe way: rendered in memory, then written to a fresh temporary file
    beside it and renamed into place (`formats.atomic`): a link planted at the path is replaced, never
    written through, and a failed write leaves the old file as it was."""
    from .formats.atomic import write_file_atomically

    buffer = io.BytesIO()
    render(buffer)
    write_file_atomically(Path(path), buffer.getvalue())


def _distinct_outputs(*named: tuple[str, str | None]) -> None:
    """Two outputs of one command may not be the same file (the second would overwrite the first)."""
    seen: dict[Path, str] = {}
    for option, name in named:
        if name is None:
            continue
        key = Path(name).parent.resolve() / Path(name).name  # the link itself, not where it points: never followed
        if key in seen:
            raise CLIError(f"{option} {name!r} is the same file as {seen[key]}; give each output its own name.")
        seen[key] = f"{option} {name!r}"


def _integer_model(source: str | None) -> Any:
    """The integer model of a quantized .tflite file (the only source it takes; default: the embedded one)."""
    from .checkpoints import resolve_checkpoint
    from .integer_model import QuantizedMobileNetV2

    path = resolve_checkpoint(source or DEFAULT_MODEL)
    if path.suffix != ".tflite":
        raise CLIError(f"--integer runs a quantized .tflite file; --weights {source!r} is not one.")
    return QuantizedMobileNetV2.from_pretrained(path)


def _tflite_path(source: str | None, option: str) -> Path:
    """The .tflite file behind --weights (default: the embedded classifier), for the interpreter."""
    from .checkpoints import resolve_checkpoint

    path = resolve_checkpoint(source or DEFAULT_MODEL)
    if path.suffix != ".tflite":
        raise CLIError(f"{option} needs --weights to be the .tflite file itself.")
    return path


def _sample_image() -> Path:
    """The cat photo shipped with the package (npmnv2/data/cat.jpg)."""
    from .data_files import sample_image

    return sample_image("cat")


def _say_default(weights: str | None) -> None:
    """One line on stderr when the embedded model is used because no --weights was given."""
    if weights == DEFAULT_MODEL:
        print(
            f"npmnv2: using the embedded model ({DEFAULT_MODEL}: Coral MobileNetV2 1.0 224 uint8, ImageNet); "
            "--weights chooses another",
            file=sys.stderr,
        )


# ============================================================================ classify


def cmd_classify(args: argparse.Namespace) -> int:
    from .image_processing_mobilenet_v2 import MobileNetV2ImageProcessor
    from .ops import softmax

    paths = _image_paths(args.images) if args.images else [_sample_image()]
    _say_default(args.weights)
    processor = MobileNetV2ImageProcessor.from_pretrained(args.weights)
    if args.integer:
        model = _integer_model(args.weights)
        labels = {int(k): v for k, v in model.float_config.get("id2label", {}).items()}
    else:
        model = _load_model(args.weights, "classification")
        labels = model.config.id2label
    results = []
    for batch in _batches(paths, args.batch_size, progress=not args.json):
        if args.integer:  # the file's softmax output, dequantized: probabilities
            probs = np.concatenate(
                [model(model.input_from_pixels(processor.integer_pixels([path]))).dequantized[0] for path in batch]
            )
        else:
            probs = softmax(model(processor(batch)["pixel_values"]).logits)  # (N, L)
        for path, p in zip(batch, probs, strict=True):
            top = np.argsort(-p, kind="stable")[: args.top_k]
            preds = [{"id": int(k), "label": labels.get(int(k), str(k)), "probability": float(p[k])} for k in top]
            results.append({"image": str(path), "predictions": preds})
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            print(result["image"])
            for pred in result["predictions"]:
                print(f"  {pred['probability']:.3f}  {pred['id']:>4}  {printable(pred['label'], lines=False)}")
    return 0


# ============================================================================ segment


def cmd_segment(args: argparse.Namespace) -> int:
    from PIL import Image

    from .image_processing_mobilenet_v2 import MobileNetV2ImageProcessor, load_image
    from .viz import pascal_voc_palette, segmentation_overlay

    path = _image_paths([args.image])[0]
    _check_output(args.output, {".png", ".jpg", ".jpeg", ".pdf", ".svg"}, "-o", inputs=[path])
    if args.mask:
        _distinct_outputs(("-o", args.output), ("--mask", args.mask))
        _check_output(args.mask, {".png"}, "--mask", inputs=[path])
    try:
        processor = MobileNetV2ImageProcessor.from_pretrained(args.weights)
    except Exception as err:
        if args.weights != DEFAULT_SEGMENTER and not isinstance(err, FileNotFoundError):
            raise
        why = str(err).split("; ")[0].split(". ")[0]  # the reason only: the generic alternatives name a classifier
        raise CLIError(
            f"no segmentation weights ({why}): give a DeepLabV3 model with --weights, such as "
            "deeplabv3_mnv2_pascal_quant.tflite (`npmnv2 data fetch` downloads it into ~/.cache/npmnv2), or a "
            "transformers DeepLabV3 checkpoint folder."
        ) from None
    image = load_image(path)
    # The class map is computed at a bounded working size (the logits of a 12000x12000 photo at full
    # size would take 12 GB), then only the uint8 map is enlarged for --mask.
    scale = min(1.0, SEGMENT_WORKING_SIZE / max(image.width, image.height))
    work = (max(1, round(image.height * scale)), max(1, round(image.width * scale)))
    if args.integer:  # the file's own ARG_MAX output, at its input size, resized to the working size
        model = _integer_model(args.weights)
        id2label = {int(k): v for k, v in model.float_config.get("id2label", {}).items()}
        ids = model(model.input_from_pixels(processor.integer_pixels(image))).outputs[0][0].astype(np.uint8)
        resized = Image.fromarray(ids).resize((work[1], work[0]), Image.Resampling.NEAREST)
        class_map = np.asarray(resized).astype(np.int64)
    else:
        model = _load_model(args.weights, "segmentation")
        id2label = model.config.id2label
        outputs = model(processor(image)["pixel_values"])
        class_map = processor.post_process_semantic_segmentation(outputs, target_sizes=[work])[0]
    shown = image if scale == 1.0 else image.resize((work[1], work[0]), Image.Resampling.BILINEAR)
    fig = segmentation_overlay(np.asarray(shown), class_map, id2label, title=f"{path.name}")
    _write_output(args.output, lambda f: fig.savefig(f, dpi=100, format=Path(args.output).suffix[1:]))
    present = ", ".join(f"{k} {printable(id2label.get(int(k), ''), lines=False)}".strip() for k in np.unique(class_map))
    print(f"wrote {args.output} (classes present: {present})")
    if args.mask:
        mask = Image.fromarray(class_map.astype(np.uint8), mode="P")
        if scale != 1.0:  # class ids are labels, not intensities: nearest neighbour only
            mask = mask.resize((image.width, image.height), Image.Resampling.NEAREST)
        mask.putpalette(pascal_voc_palette().ravel().tolist())
        _write_output(args.mask, lambda f: mask.save(f, format="PNG"))
        print(f"wrote {args.mask} (class ids as a palette PNG)")
    return 0


# ============================================================================ explain


def cmd_explain(args: argparse.Namespace) -> int:
    from . import viz
    from .image_processing_mobilenet_v2 import MobileNetV2ImageProcessor, load_image

    path = _image_paths([args.image])[0]
    _check_output(args.output, {".png", ".jpg", ".jpeg", ".pdf", ".svg"}, "-o", inputs=[path])
    _say_default(args.weights)
    model = _load_model(args.weights, "auto")
    if model.task == "backbone":
        raise CLIError(f"explain needs a classifier or DeepLab head; --weights {args.weights!r} has none.")
    if args.target is not None and not 0 <= args.target < model.config.num_labels:
        labels = model.config.num_labels
        raise CLIError(f"--target {args.target} is not a class of this model: give one in [0, {labels}).")
    if args.layer is not None and args.method == "saliency":
        raise CLIError("--layer chooses Grad-CAM's feature map; saliency differentiates the pixels and takes none.")
    if args.layer is not None:
        from .trace import check_step_name

        try:
            check_step_name(model, args.layer)
        except KeyError as error:
            raise CLIError(f"--layer: {error.args[0]}") from None
    processor = MobileNetV2ImageProcessor.from_pretrained(args.weights)
    image = load_image(path)
    if args.method == "gradcam":
        fig = viz.grad_cam(model, image, args.target, layer=args.layer, processor=processor)
    else:
        fig = viz.saliency(model, image, args.target, processor=processor)
    _write_output(args.output, lambda f: fig.savefig(f, dpi=100, format=Path(args.output).suffix[1:]))
    print(f"wrote {args.output} ({fig.get_suptitle()})")
    return 0


# ============================================================================ explore


def cmd_explore(args: argparse.Namespace) -> int:
    from .explorer import session_for, write_page

    path = _image_paths([args.image])[0]
    _check_output(args.output, {".html", ".htm"}, "-o", inputs=[path])
    _say_default(args.weights)
    model = _integer_model(args.weights) if args.integer else _load_model(args.weights, "auto")
    started = time.perf_counter()
    session = session_for(model, path)
    kind = "integer model" if args.integer else type(model).__name__
    title = f"npmnv2 explorer: {path.name} through {args.weights} ({kind})"
    write_page(session, args.output, title=title)
    size, seconds = Path(args.output).stat().st_size / 2**20, time.perf_counter() - started
    print(
        f"wrote {args.output} ({len(session.steps)} steps, {size:.1f} MiB, {seconds:.1f} s): open it in a browser; "
        "it needs no server and no network"
    )
    return 0


# ============================================================================ convert


def cmd_convert(args: argparse.Namespace) -> int:
    from .image_processing_mobilenet_v2 import MobileNetV2ImageProcessor
    from .weights import PYTORCH_NAME, write_folder

    dest = Path(args.dest)
    if dest.exists() and not dest.is_dir():
        raise CLIError(f"destination {str(dest)!r} is a file; give a folder (it is created if missing).")
    if dest.exists() and any(dest.iterdir()) and not args.overwrite:
        raise CLIError(f"destination {str(dest)!r} is not empty; choose an empty folder or pass --overwrite.")
    from .checkpoints import resolve_checkpoint

    source = resolve_checkpoint(args.source)
    source_folder = source if source.is_dir() else source.parent
    if dest.exists() and (dest.samefile(source_folder) or any(dest.samefile(f) for f in _files_of(source_folder))):
        raise CLIError(
            f"destination {str(dest)!r} holds the source {args.source!r}; converting there would replace or delete "
            "it. Give another folder."
        )
    model = _load_model(args.source, args.task)
    files = {**model.checkpoint_files(), **MobileNetV2ImageProcessor.from_pretrained(args.source).checkpoint_files()}
    # all three files or none; an old pytorch_model.bin would shadow the new weights for some loaders
    write_folder(dest, files, remove=(PYTORCH_NAME,) if args.overwrite else ())
    config = {k: v for k, v in model.config.to_dict().items() if k not in ("id2label", "label2id")}
    print(f"converted {args.source} -> {dest} as {type(model).__name__}")
    print(json.dumps({**config, "num_labels": model.config.num_labels}, indent=2, sort_keys=True))
    print(f"parameters: {model.num_parameters():,}")
    return 0


# ============================================================================ summary, trace, compare


ARCHITECTURE_FLAGS = ("depth_multiplier", "output_stride", "num_labels", "depth_divisible_by", "task")


def _model_for(args: argparse.Namespace) -> Any:
    """The model of summary / trace / compare: from --weights (default: the embedded classifier; the
    class is chosen by the head), or, with --random, random weights built from the architecture
    flags, announced on stdout so that nobody mistakes their numbers for a trained model's."""
    from . import MobileNetV2Config, MobileNetV2ForImageClassification, MobileNetV2ForSemanticSegmentation

    given = [f"--{f.replace('_', '-')}" for f in ARCHITECTURE_FLAGS if getattr(args, f) is not None]
    if not args.random:
        if given:
            verb, them = ("applies", "it") if len(given) == 1 else ("apply", "them")
            raise CLIError(
                f"{', '.join(given)} only {verb} to a randomly initialised model: add --random, or drop {them} to "
                "use the architecture of --weights."
            )
        weights = args.weights or DEFAULT_MODEL
        _say_default(weights)
        return _load_model(weights, "auto")
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
    model = _model_for(args)
    size = args.image_size or list(model.config.image_hw)
    if len(size) > 2:
        raise CLIError(f"--image-size takes H or H W, got {size}.")
    summary = model.summary(size[0] if len(size) == 1 else (size[0], size[1]))
    print(repr(summary))
    return 0


def _pixels_for(args: argparse.Namespace) -> np.ndarray:
    """The image as the model of `_model_for` takes it (transformers' default preprocessing with --random)."""
    from .image_processing_mobilenet_v2 import MobileNetV2ImageProcessor

    if args.random:
        processor = MobileNetV2ImageProcessor()
    else:
        processor = MobileNetV2ImageProcessor.from_pretrained(args.weights or DEFAULT_MODEL)
    return processor(_image_paths([args.image])[0])["pixel_values"]


def cmd_trace(args: argparse.Namespace) -> int:
    if args.save:
        _check_output(args.save, {".npz"}, "--save", inputs=[Path(args.image)])
    if args.integer:
        return _trace_integer(args)
    model = _model_for(args)
    trace = model.trace(_pixels_for(args), layers=args.layers or None, stop_at=args.stop_at)
    print(trace.format(kept_only=bool(args.layers)))
    if args.save:
        _write_output(args.save, lambda f: np.savez(f, **{name: trace[name] for name in trace}))
        print(f"wrote {len(trace)} tensors (NCHW) to {args.save}")
    return 0


def _saved_tensors(name: str) -> dict[str, np.ndarray]:
    """The tensors of an .npz file (never unpickled, read within a size budget), or a clear error."""
    from .formats.errors import WeightFileError
    from .formats.saved_arrays import read_npz

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
    from .image_processing_mobilenet_v2 import MobileNetV2ImageProcessor

    model = _integer_model(args.weights)
    raw = MobileNetV2ImageProcessor.from_pretrained(args.weights).integer_pixels(_image_paths([args.image])[0])
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
        _write_output(args.save, lambda f: np.savez(f, **{name: trace[name] for name in trace}))
        print(f"wrote {len(trace)} integer tensors (NCHW) to {args.save}")
    return 0


def _progress(line: str) -> None:
    """A progress line on stderr (stdout keeps only the result)."""
    print(f"npmnv2 compare: {line}", file=sys.stderr, flush=True)


def _compare_integer(args: argparse.Namespace) -> int:
    """compare --integer --against tflite: the integer model against the interpreter's reference kernels."""
    from . import compare, verify

    if args.against != "tflite":
        raise CLIError("--integer compares with the TFLite interpreter: use --against tflite.")
    model = _integer_model(args.weights)
    path = _tflite_path(args.weights, "--integer")
    pixels, _ = verify.tflite_input(path, _image_paths([args.image])[0])  # (1, H, W, 3) uint8
    reference = verify.tflite_integer_tensors(path, pixels, reference_kernels=True)
    from .ops import nhwc_to_nchw

    result = compare(model.trace(nhwc_to_nchw(pixels)), reference, tolerance=0.0)
    print(repr(result))
    if result.first_divergence is None and len(result.rows) == len(model.graph.ops):
        total = sum(int(np.prod(r.shape)) for r in result.rows)
        print(
            f"exact: all {len(result.rows)} op outputs ({total:,} integers) equal the TFLite interpreter's "
            "reference kernels, element by element."
        )
        return 0
    return 3


def cmd_compare(args: argparse.Namespace) -> int:
    from . import compare, verify

    if args.integer:
        return _compare_integer(args)

    if args.against == "tflite" and args.random:
        raise CLIError("--against tflite compares the .tflite's own weights: drop --random.")
    model = _model_for(args)
    against = args.against
    if against == "tflite":
        path = _tflite_path(args.weights, "--against tflite")
        _, pixel_values = verify.tflite_input(path, _image_paths([args.image])[0])
        reference = verify.tflite_activations(path, _image_paths([args.image])[0])
    else:
        pixel_values = _pixels_for(args)
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
            reference = _saved_tensors(against)
    result = compare(model.trace(pixel_values), reference, tolerance=args.tolerance)
    if not result.rows:
        raise CLIError(
            f"--against {against!r}: none of its {len(reference)} tensors has a step name of this model "
            f"(e.g. {model.step_names()[0]!r}), so nothing was compared; save tensors under npmnv2's step names."
        )
    print(repr(result))
    return 0 if result.first_divergence is None else 3


# ============================================================================ verify


def cmd_verify(args: argparse.Namespace) -> int:
    """verify: another implementation against the spec, op by op; exit 3 when an op is wrong on its own,
    4 when nothing is wrong but part of the port could not be checked (inconclusive)."""
    from . import verify

    peer: Any = args.peer
    path = Path(peer)
    if not path.exists():
        raise CLIError(
            f"peer {peer!r} does not exist; give an .onnx, .tflite, .keras or .npz file or a folder of .npy."
        )
    # Every output is checked before any work: never a folder, a wrong type, one of the inputs, or twice.
    from .checkpoints import resolve_checkpoint

    inputs = _files_of(path) + _files_of(Path(args.image))
    for source in (args.model, args.reference):
        if source:
            inputs += _files_of(resolve_checkpoint(source))
    if args.figure:
        _check_output(args.figure, {".png", ".pdf", ".svg", ".jpg", ".jpeg"}, "--figure", inputs=inputs)
    if args.model_explorer:
        _check_output(args.model_explorer, {".json"}, "--model-explorer", inputs=inputs)
    _distinct_outputs(("--figure", args.figure), ("--model-explorer", args.model_explorer))
    image = _image_paths([args.image])[0]
    model = None
    if args.model:
        model = _load_model(args.model, "auto")
    report = verify.check(peer, image, config=args.config, model=model, reference=args.reference)
    print(repr(report))
    if args.figure:
        figure = report.figure()
        _write_output(args.figure, lambda f: figure.savefig(f, dpi=100, format=Path(args.figure).suffix[1:] or "png"))
        print(f"wrote {args.figure}")
    if args.model_explorer:
        report.to_model_explorer(args.model_explorer)
        print(f"wrote {args.model_explorer} (node data for AI Edge Model Explorer)")
    return {"faithful": 0, "diverges": 3, "inconclusive": 4}[report.status]


def _verify_parser(add: AddParser) -> None:
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


# ============================================================================ data


def cmd_data(args: argparse.Namespace) -> int:
    """data list / data fetch: the public files the tests, notebooks and benchmarks use."""
    from . import data_files

    if args.action is None:
        raise CLIError("give an action: `npmnv2 data list` (what each file is, and where) or `npmnv2 data fetch`.")

    if args.action == "list":
        folder = Path(args.dest) if args.dest else (data_files.find_data_dir() or data_files.cache_dir())
        order = "; ".join(f"{i}. {why}: {where}" for i, (why, where) in enumerate(data_files.lookup_order(), 1))
        print(f"folder: {folder}  (looked in {order}; --dest lists another)")
        rows = [["file", "status", "bytes", "license", "what"]]
        for entry in data_files.CATALOGUE:
            state = data_files.status(entry, folder) if folder.is_dir() else "missing"
            if state == "missing" and entry.name == data_files.DEFAULT_MODEL_FILE:
                state = "shipped"  # inside the package, npmnv2/default: nothing to fetch
            rows.append([entry.name, state, f"{entry.size:,}", entry.license, entry.what])
        print(format_table(rows))
        print(f"source: {data_files.BASE_URL} (each file checked against a pinned SHA-256)")
        print(
            f"shipped inside the package: {data_files.DEFAULT_MODEL} = {data_files.default_model_path()}, "
            f"photos {', '.join(str(data_files.sample_image(n)) for n in data_files.SAMPLE_IMAGES)}"
        )
        return 0
    folder = Path(args.dest) if args.dest else data_files.cache_dir()
    try:
        data_files.fetch(folder, args.files or None, base_url=args.base_url, report=lambda line: print(line))
    except data_files.DataError as err:
        raise CLIError(str(err)) from None
    print(f"all {len(args.files or data_files.CATALOGUE)} files are in {folder}")
    return 0


# ============================================================================ parser


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 1, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="npmnv2",
        description="MobileNetV2 and DeepLabV3 in readable NumPy: classify, segment, convert, inspect.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help_text: str, example: str) -> argparse.ArgumentParser:  # one subcommand
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        # accepted after the subcommand too; SUPPRESS keeps a --debug given before it
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback")
        return p

    for define in (
        _classify_parser,
        _segment_parser,
        _explain_parser,
        _explore_parser,
        _convert_parser,
        _summary_parser,
        _trace_parser,
        _compare_parser,
        _data_parser,
        _verify_parser,
    ):
        define(add)
    return parser


AddParser = Callable[[str, str, str], argparse.ArgumentParser]  # (name, help, example) -> its parser
WEIGHTS_HELP = "weights: a transformers checkpoint folder, .safetensors/.bin file, .tflite file or hub id"


def model_options(p: argparse.ArgumentParser) -> None:
    """The options of summary, trace and compare that choose their model: --weights, or --random."""
    p.add_argument("--weights", help=f"{WEIGHTS_HELP} (default: the embedded classifier, {DEFAULT_MODEL})")
    p.add_argument("--random", action="store_true", help="random weights built from the flags below, not --weights")
    p.add_argument("--seed", type=int, default=0, help="with --random: the seed (default 0)")
    p.add_argument("--depth-multiplier", type=float, help="with --random (default 1.0)")
    p.add_argument("--output-stride", type=int, choices=[8, 16, 32], help="with --random (default 32)")
    p.add_argument("--num-labels", type=int, help="with --random (default 1001; 21 with --task segmentation)")
    p.add_argument("--depth-divisible-by", type=int, help="with --random (default 8)")
    p.add_argument(
        "--task",
        choices=["classification", "segmentation"],
        help="with --random: which model (default classification)",
    )


def _classify_parser(add: AddParser) -> None:
    p = add(
        "classify",
        "classify images with the embedded model or --weights (no image: the shipped photo of a cat)",
        "npmnv2 classify cat.jpg --top-k 3    (or: --weights google/mobilenet_v2_1.0_224)",
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders of images")
    p.add_argument("--weights", default=DEFAULT_CLASSIFIER, help=f"{WEIGHTS_HELP} (default: {DEFAULT_CLASSIFIER})")
    p.add_argument("--top-k", type=_positive_int, default=5, help="how many classes to print per image (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--integer", action="store_true", help="run the quantized .tflite in integer arithmetic")
    p.set_defaults(func=cmd_classify)


def _segment_parser(add: AddParser) -> None:
    p = add(
        "segment",
        "segment an image and write it blended with the PASCAL VOC colours",
        "npmnv2 segment bird.bmp --weights deeplabv3_mnv2_pascal_quant.tflite -o overlay.png --mask mask.png",
    )
    p.add_argument("image", metavar="IMAGE", help="the image file")
    p.add_argument("--weights", default=DEFAULT_SEGMENTER, help=f"{WEIGHTS_HELP} (default: {DEFAULT_SEGMENTER})")
    p.add_argument("-o", "--output", required=True, help="overlay PNG to write (image + colours + legend)")
    p.add_argument("--mask", help="also write the class ids as a palette PNG here")
    p.add_argument("--integer", action="store_true", help="run the quantized .tflite in integer arithmetic")
    p.set_defaults(func=cmd_segment)


def _explain_parser(add: AddParser) -> None:
    p = add(
        "explain",
        "show which pixels made the model predict a class (Grad-CAM or a saliency map), as a PNG",
        "npmnv2 explain cat.bmp --weights mobilenet_v2_1.0_224_quant.tflite -o gradcam.png --target 286",
    )
    p.add_argument("image", metavar="IMAGE", help="the image file")
    p.add_argument("--weights", default=DEFAULT_CLASSIFIER, help=f"{WEIGHTS_HELP} (default: {DEFAULT_CLASSIFIER})")
    p.add_argument("-o", "--output", required=True, help="figure to write (input, overlay, heat map)")
    p.add_argument(
        "--target",
        type=int,
        help="class id to explain (default: the predicted class; for DeepLab the most frequent non-background class)",
    )
    p.add_argument("--method", choices=["gradcam", "saliency"], default="gradcam", help="default gradcam")
    p.add_argument("--layer", metavar="NAME", help="Grad-CAM's feature map (default: the last one before the head)")
    p.set_defaults(func=cmd_explain)


def _explore_parser(add: AddParser) -> None:
    p = add(
        "explore",
        "write the interactive explorer of one image as a self-contained HTML page (no server, no network)",
        "npmnv2 explore cat.bmp --weights mobilenet_v2_1.0_224_quant.tflite -o cat.html",
    )
    p.add_argument("image", metavar="IMAGE", help="the image file")
    p.add_argument("--weights", default=DEFAULT_MODEL, help=f"{WEIGHTS_HELP} (default: the embedded model)")
    p.add_argument("--integer", action="store_true", help="explore the integer model of a quantized .tflite file")
    p.add_argument("-o", "--output", required=True, help="the .html page to write")
    p.set_defaults(func=cmd_explore)


def _convert_parser(add: AddParser) -> None:
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


def _summary_parser(add: AddParser) -> None:
    p = add(
        "summary",
        "per-layer output shapes, parameters, MACs and activation memory",
        "npmnv2 summary --image-size 224      (or: --random --depth-multiplier 0.5)",
    )
    model_options(p)
    p.add_argument("--image-size", type=int, nargs="+", metavar="N", help="H [W] (default: the model's image_size)")
    p.set_defaults(func=cmd_summary)


def _trace_parser(add: AddParser) -> None:
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
    p.add_argument(
        "--integer",
        action="store_true",
        help="trace the quantized .tflite's integer ops (scale, zero point, saturation counts per step)",
    )
    p.set_defaults(func=cmd_trace)


def _compare_parser(add: AddParser) -> None:
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
        type=_tolerance,
        default=None,
        help="max |diff| / max(1, max |reference|) (default: 1e-4 against torch or a .npz; against tflite, "
        "differences are judged against the integer model's quantization noise unless this is given)",
    )
    p.add_argument(
        "--integer",
        action="store_true",
        help="with --against tflite: the integer model against the interpreter's reference kernels, exactly",
    )
    p.set_defaults(func=cmd_compare)


def _data_parser(add: AddParser) -> None:
    p = add(
        "data",
        "list or fetch the public models and photos the tests, notebooks and benchmarks use",
        "npmnv2 data fetch --dest ~/coral",
    )
    p.add_argument(
        "action", nargs="?", choices=["list", "fetch"], help="list: what each file is and whether it is present"
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="fetch only these files (default: all)")
    p.add_argument("--dest", help="folder to use (default: $NPMNV2_DATA, else ~/.cache/npmnv2)")
    p.add_argument("--base-url", default=BASE_URL, help=f"where to download from (default {BASE_URL})")
    p.set_defaults(func=cmd_data)


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 1e-4, got {text!r}") from None
    if not (value >= 0 and value != float("inf")):  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    """argparse type: an int >= 1, with a message that says so."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


# Errors that mean npmnv2 itself failed, not that the input was refused with a sentence.
_INTERNAL = (KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError, AssertionError)


def _one_line(err: Exception) -> str:
    """The error as one line. An input refused with a sentence keeps it; running out of memory
    says so; an internal error names itself and asks for a report."""
    if isinstance(err, MemoryError):
        detail = f" ({err})" if str(err) else ""
        return (
            f"ran out of memory{detail}: the input asks for more memory than this machine has; use a smaller "
            "image, model or batch."
        )
    sentence = isinstance(err, KeyError) and err.args and isinstance(err.args[0], str) and " " in err.args[0]
    text = " ".join((err.args[0] if sentence else str(err)).split())  # npmnv2's KeyErrors are sentences
    if (isinstance(err, _INTERNAL) and not sentence) or not text:
        return (
            f"npmnv2 failed unexpectedly ({type(err).__name__}: {text or 'no message'}); this is a bug, not your "
            "input's fault alone: please report it with the command and --debug's traceback."
        )
    if len(text) > MAX_MESSAGE:  # a message quoting a whole file or list: its start names what is wrong
        text = f"{text[: MAX_MESSAGE - 100]} ... ({len(text):,} characters; --debug shows all)"
    return text


MAX_MESSAGE = 500  # characters of the one line an error prints


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("npmnv2: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `npmnv2 ... | head`: the reader has what it wanted
        sys.stderr.close()
        return 0
    except Exception as err:  # every failure becomes one line, unless --debug
        if args.debug:
            raise
        message = printable(_one_line(err))
        print(f"npmnv2 {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
