"""What the `npmnv2` commands share: loading a model or an integer model by name, finding images, checking
and writing output files, the options every model command takes.
"""

from __future__ import annotations

import argparse
import io
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data_files import DEFAULT_MODEL

DEFAULT_CLASSIFIER = DEFAULT_MODEL  # the Coral uint8 classifier shipped inside the package


DEFAULT_SEGMENTER = "google/deeplabv3_mobilenet_v2_1.0_513"


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class CLIError(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


def load_model(source: str, task: str) -> Any:
    """Read `source` once and load it as the model class of `task` ("auto": the one its head fits).

    A checkpoint without the task's head is an error here, not a warning.
    """
    from .. import MobileNetV2ForImageClassification, MobileNetV2ForSemanticSegmentation, MobileNetV2Model
    from ..checkpoints import read_source, resolve_checkpoint
    from ..warnings import NpMnV2Warning

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


def image_paths(items: Sequence[str]) -> list[Path]:
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


def batches(items: list[Any], size: int, *, progress: bool) -> Iterator[list[Any]]:
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    if progress and len(chunks) > 1:
        from tqdm import tqdm

        yield from tqdm(chunks, desc="classifying", unit="batch", file=sys.stderr)
        return
    yield from chunks


def check_output(name: str, suffixes: set[str], option: str, *, inputs: Sequence[Path] = ()) -> Path:
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


def files_of(path: Path) -> list[Path]:
    """A file, or the files directly inside a folder: what an output must never overwrite."""
    if path.is_dir():
        return [p for p in path.iterdir() if p.is_file()]
    return [path] if path.exists() else []


def write_output(path: str, render: Callable[[io.BytesIO], None]) -> None:
    """Write an output file the safe way: rendered in memory, then written to a fresh temporary file
    beside it and renamed into place (`formats.atomic`): a link planted at the path is replaced, never
    written through, and a failed write leaves the old file as it was."""
    from ..formats.atomic import write_file_atomically

    buffer = io.BytesIO()
    render(buffer)
    write_file_atomically(Path(path), buffer.getvalue())


def distinct_outputs(*named: tuple[str, str | None]) -> None:
    """Two outputs of one command may not be the same file (the second would overwrite the first)."""
    seen: dict[Path, str] = {}
    for option, name in named:
        if name is None:
            continue
        key = Path(name).parent.resolve() / Path(name).name  # the link itself, not where it points: never followed
        if key in seen:
            raise CLIError(f"{option} {name!r} is the same file as {seen[key]}; give each output its own name.")
        seen[key] = f"{option} {name!r}"


def integer_model(source: str | None, kernels: str = "reference") -> Any:
    """The integer model of a quantized .tflite file (the only source it takes; default: the embedded
    one), computing as the interpreter's `kernels` do ("reference" or "optimized")."""
    from ..checkpoints import resolve_checkpoint
    from ..tflite.integer_model import QuantizedMobileNetV2

    path = resolve_checkpoint(source or DEFAULT_MODEL)
    if path.suffix != ".tflite":
        raise CLIError(f"--integer runs a quantized .tflite file; --weights {source!r} is not one.")
    return QuantizedMobileNetV2.from_pretrained(path, kernels=kernels)


def integer_options(p: argparse.ArgumentParser, help_text: str) -> None:
    """--integer (the command's integer-model mode, described by help_text) and --kernels: which of the
    interpreter's kernel sets the integer model reproduces (`npmnv2.tflite.kernels`)."""
    from ..tflite.kernels import KERNEL_SETS

    p.add_argument("--integer", action="store_true", help=help_text)
    p.add_argument(
        "--kernels",
        choices=tuple(KERNEL_SETS),
        default="reference",
        help="with --integer: compute as the interpreter's reference kernels (default) or its optimized ones",
    )


def tflite_path(source: str | None, option: str) -> Path:
    """The .tflite file behind --weights (default: the embedded classifier), for the interpreter."""
    from ..checkpoints import resolve_checkpoint

    path = resolve_checkpoint(source or DEFAULT_MODEL)
    if path.suffix != ".tflite":
        raise CLIError(f"{option} needs --weights to be the .tflite file itself.")
    return path


def sample_image() -> Path:
    """The cat photo shipped with the package (npmnv2/data/cat.jpg)."""
    from ..data_files import sample_image

    return sample_image("cat")


def say_default(weights: str | None) -> None:
    """One line on stderr when the embedded model is used because no --weights was given."""
    if weights == DEFAULT_MODEL:
        print(
            f"npmnv2: using the embedded model ({DEFAULT_MODEL}: Coral MobileNetV2 1.0 224 uint8, ImageNet); "
            "--weights chooses another",
            file=sys.stderr,
        )


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


def tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 1e-4, got {text!r}") from None
    if not (value >= 0 and value != float("inf")):  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an int >= 1, with a message that says so."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
