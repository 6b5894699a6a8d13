"""The commands on images: `classify`, `segment`, `explain` (Grad-CAM) and `explore` (the explorer page)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..data_files import DEFAULT_MODEL
from ..tables import printable
from .common import (
    DEFAULT_CLASSIFIER,
    DEFAULT_SEGMENTER,
    WEIGHTS_HELP,
    AddParser,
    CLIError,
    batches,
    check_output,
    distinct_outputs,
    image_paths,
    integer_model,
    integer_options,
    load_model,
    positive_int,
    sample_image,
    say_default,
    write_output,
)


def cmd_classify(args: argparse.Namespace) -> int:
    from ..image_processing_mobilenet_v2 import MobileNetV2ImageProcessor
    from ..ops import softmax

    paths = image_paths(args.images) if args.images else [sample_image()]
    say_default(args.weights)
    processor = MobileNetV2ImageProcessor.from_pretrained(args.weights)
    if args.integer:
        model = integer_model(args.weights, args.kernels)
        labels = {int(k): v for k, v in model.float_config.get("id2label", {}).items()}
    else:
        model = load_model(args.weights, "classification")
        labels = model.config.id2label
    results = []
    for batch in batches(paths, args.batch_size, progress=not args.json):
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


def cmd_segment(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..image_processing_mobilenet_v2 import MobileNetV2ImageProcessor, load_image
    from ..viz import pascal_voc_palette, segmentation_overlay

    path = image_paths([args.image])[0]
    check_output(args.output, {".png", ".jpg", ".jpeg", ".pdf", ".svg"}, "-o", inputs=[path])
    if args.mask:
        distinct_outputs(("-o", args.output), ("--mask", args.mask))
        check_output(args.mask, {".png"}, "--mask", inputs=[path])
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
        model = integer_model(args.weights, args.kernels)
        id2label = {int(k): v for k, v in model.float_config.get("id2label", {}).items()}
        ids = model(model.input_from_pixels(processor.integer_pixels(image))).outputs[0][0].astype(np.uint8)
        resized = Image.fromarray(ids).resize((work[1], work[0]), Image.Resampling.NEAREST)
        class_map = np.asarray(resized).astype(np.int64)
    else:
        model = load_model(args.weights, "segmentation")
        id2label = model.config.id2label
        outputs = model(processor(image)["pixel_values"])
        class_map = processor.post_process_semantic_segmentation(outputs, target_sizes=[work])[0]
    shown = image if scale == 1.0 else image.resize((work[1], work[0]), Image.Resampling.BILINEAR)
    fig = segmentation_overlay(np.asarray(shown), class_map, id2label, title=f"{path.name}")
    write_output(args.output, lambda f: fig.savefig(f, dpi=100, format=Path(args.output).suffix[1:]))
    present = ", ".join(f"{k} {printable(id2label.get(int(k), ''), lines=False)}".strip() for k in np.unique(class_map))
    print(f"wrote {args.output} (classes present: {present})")
    if args.mask:
        mask = Image.fromarray(class_map.astype(np.uint8), mode="P")
        if scale != 1.0:  # class ids are labels, not intensities: nearest neighbour only
            mask = mask.resize((image.width, image.height), Image.Resampling.NEAREST)
        mask.putpalette(pascal_voc_palette().ravel().tolist())
        write_output(args.mask, lambda f: mask.save(f, format="PNG"))
        print(f"wrote {args.mask} (class ids as a palette PNG)")
    return 0


SEGMENT_WORKING_SIZE = 1024  # the longest side at which `segment` computes its class map


def cmd_explain(args: argparse.Namespace) -> int:
    from .. import viz
    from ..image_processing_mobilenet_v2 import MobileNetV2ImageProcessor, load_image

    path = image_paths([args.image])[0]
    check_output(args.output, {".png", ".jpg", ".jpeg", ".pdf", ".svg"}, "-o", inputs=[path])
    say_default(args.weights)
    model = load_model(args.weights, "auto")
    if model.task == "backbone":
        raise CLIError(f"explain needs a classifier or DeepLab head; --weights {args.weights!r} has none.")
    if args.target is not None and not 0 <= args.target < model.config.num_labels:
        labels = model.config.num_labels
        raise CLIError(f"--target {args.target} is not a class of this model: give one in [0, {labels}).")
    if args.layer is not None and args.method == "saliency":
        raise CLIError("--layer chooses Grad-CAM's feature map; saliency differentiates the pixels and takes none.")
    if args.layer is not None:
        from ..trace import check_step_name

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
    write_output(args.output, lambda f: fig.savefig(f, dpi=100, format=Path(args.output).suffix[1:]))
    print(f"wrote {args.output} ({fig.get_suptitle()})")
    return 0


def cmd_explore(args: argparse.Namespace) -> int:
    from ..explorer import session_for, write_page

    path = image_paths([args.image])[0]
    check_output(args.output, {".html", ".htm"}, "-o", inputs=[path])
    say_default(args.weights)
    model = integer_model(args.weights, args.kernels) if args.integer else load_model(args.weights, "auto")
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


def classify_parser(add: AddParser) -> None:
    p = add(
        "classify",
        "classify images with the embedded model or --weights (no image: the shipped photo of a cat)",
        "npmnv2 classify cat.jpg --top-k 3    (or: --weights google/mobilenet_v2_1.0_224)",
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders of images")
    p.add_argument("--weights", default=DEFAULT_CLASSIFIER, help=f"{WEIGHTS_HELP} (default: {DEFAULT_CLASSIFIER})")
    p.add_argument("--top-k", type=positive_int, default=5, help="how many classes to print per image (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per forward pass (default 8)")
    integer_options(p, "run the quantized .tflite in integer arithmetic")
    p.set_defaults(func=cmd_classify)


def segment_parser(add: AddParser) -> None:
    p = add(
        "segment",
        "segment an image and write it blended with the PASCAL VOC colours",
        "npmnv2 segment bird.bmp --weights deeplabv3_mnv2_pascal_quant.tflite -o overlay.png --mask mask.png",
    )
    p.add_argument("image", metavar="IMAGE", help="the image file")
    p.add_argument("--weights", default=DEFAULT_SEGMENTER, help=f"{WEIGHTS_HELP} (default: {DEFAULT_SEGMENTER})")
    p.add_argument("-o", "--output", required=True, help="overlay PNG to write (image + colours + legend)")
    p.add_argument("--mask", help="also write the class ids as a palette PNG here")
    integer_options(p, "run the quantized .tflite in integer arithmetic")
    p.set_defaults(func=cmd_segment)


def explain_parser(add: AddParser) -> None:
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


def explore_parser(add: AddParser) -> None:
    p = add(
        "explore",
        "write the interactive explorer of one image as a self-contained HTML page (no server, no network)",
        "npmnv2 explore cat.bmp --weights mobilenet_v2_1.0_224_quant.tflite -o cat.html",
    )
    p.add_argument("image", metavar="IMAGE", help="the image file")
    p.add_argument("--weights", default=DEFAULT_MODEL, help=f"{WEIGHTS_HELP} (default: the embedded model)")
    integer_options(p, "explore the integer model of a quantized .tflite file")
    p.add_argument("-o", "--output", required=True, help="the .html page to write")
    p.set_defaults(func=cmd_explore)
