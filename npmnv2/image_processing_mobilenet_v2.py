"""MobileNetV2ImageProcessor: photos in, float NCHW pixel_values out, as transformers' PIL backend does it.

Pipeline per image (each step can be switched off or overridden per call):
    to RGB -> resize (shortest edge 256, bilinear, via PIL) -> center crop 224x224 (zero padding
    when the image is smaller) -> rescale by 1/255 -> normalise with mean 0.5, std 0.5
so pixels end in [-1, 1]. Segmentation maps follow the same geometry with nearest resampling,
no rescaling and no normalisation, and come back as int64 `labels`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .ops import nchw_to_nhwc, resize_bilinear

PREPROCESSOR_NAME = "preprocessor_config.json"
RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
MIN_IMAGE_SIZE = 1
# The most pixels a resize may produce (transformers has no limit; 64 Mpx of float32 RGB is 768 MiB).
# Raise it for real, huge images: npmnv2.image_processing_mobilenet_v2.MAX_OUTPUT_PIXELS = ...
MAX_OUTPUT_PIXELS = 64 * 2**20
MAX_SIDE = 16384  # any one side a processor resizes or crops to
# The image formats a file may be in: decoders that run no external program (EPS would run
# Ghostscript). Anything else is refused before a decoder is picked.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")
# The most pixels a file's header may announce: checked before anything is decoded (a 600-byte
# JPEG can claim 9400x9400). Raise it for real, huge photos.
MAX_IMAGE_PIXELS = 64 * 2**20


class ImageLoadError(ValueError):
    """An image that cannot be read or used: missing, unreadable, not an image, empty."""


# ============================================================================ loading and colour


def load_image(image: Any) -> Image.Image:
    """A PIL image in RGB from a path, a PIL image or an HWC uint8 / float [0, 1] array.

    Colour: grayscale, palette, CMYK and the like go through PIL's convert("RGB"); RGBA and LA
    lose their alpha channel (not composited); 16-bit images keep their top 8 bits. EXIF
    orientation is applied, so a photo taken sideways comes out upright.
    """
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise ImageLoadError(f"image {str(path)!r} does not exist or is not a file.")
        try:
            with Image.open(path, formats=IMAGE_FORMATS) as opened:
                w, h = opened.size  # from the header: nothing decoded yet
                if w * h > MAX_IMAGE_PIXELS:
                    raise ImageLoadError(
                        f"{str(path)!r} announces {w}x{h} = {w * h:,} pixels, over the limit of {MAX_IMAGE_PIXELS:,} "
                        "(npmnv2.image_processing_mobilenet_v2.MAX_IMAGE_PIXELS); it was not decoded. Raise the "
                        "limit if you trust the file."
                    )
                opened.load()
                image = ImageOps.exif_transpose(opened)
        except ImageLoadError:
            raise
        except Image.DecompressionBombError as err:
            raise ImageLoadError(
                f"{str(path)!r} is too large to open safely ({err}); if you trust the file, raise "
                "PIL.Image.MAX_IMAGE_PIXELS first."
            ) from None
        except UnidentifiedImageError:
            raise ImageLoadError(
                f"{str(path)!r} is not a readable image in one of the formats npmnv2 opens "
                f"({', '.join(IMAGE_FORMATS)}); convert it to PNG or JPEG."
            ) from None
        except Exception as err:  # every decoder failure (OSError, SyntaxError, RuntimeError, ...) is the file's
            raise ImageLoadError(f"{str(path)!r} is not a readable image ({type(err).__name__}: {err}).") from None
    elif isinstance(image, np.ndarray):
        image = Image.fromarray(_array_to_uint8(image))
    elif isinstance(image, Image.Image):
        image = ImageOps.exif_transpose(image)
    else:
        raise TypeError(f"expected an image path, a PIL.Image or an (H, W, C) numpy array, got {type(image).__name__}.")
    if image.width < MIN_IMAGE_SIZE or image.height < MIN_IMAGE_SIZE:
        raise ImageLoadError(f"image is empty ({image.width}x{image.height}).")
    return _to_rgb(image)


def _array_to_uint8(array: np.ndarray) -> np.ndarray:
    """HWC (or HW) uint8 as it is; float arrays must hold pixels in [0, 1] and are scaled to 0..255."""
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"image array of shape {array.shape} looks channels-first; pass it as (H, W, C): array.transpose(1, 2, 0)."
        )
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4)):
        raise ValueError(f"image arrays must be (H, W), (H, W, 3) or (H, W, 4), got shape {array.shape}.")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ValueError(
                "float image arrays must hold pixels in [0, 1] "
                f"(got range {np.nanmin(array):.3g}..{np.nanmax(array):.3g}); pass uint8 for 0..255 pixels."
            )
        return np.round(array * 255).astype(np.uint8)
    raise TypeError(f"image arrays must be uint8 or float in [0, 1], got dtype {array.dtype}.")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        bits = np.asarray(image, dtype=np.int64)
        shift = 8 if image.mode.startswith("I;16") or bits.max() > 255 else 0
        image = Image.fromarray((np.clip(bits, 0, 65535) >> shift).astype(np.uint8))
    if image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8))
    return image if image.mode == "RGB" else image.convert("RGB")


# ============================================================================ geometry


def shortest_edge_size(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    """(height, width) after scaling the shorter side to `shortest_edge`, keeping the aspect ratio
    (the longer side is truncated, as transformers does).

    >>> shortest_edge_size(480, 640, 256)
    (256, 341)
    """
    short, long = min(height, width), max(height, width)
    new_long = int(shortest_edge * long / short)
    return (shortest_edge, new_long) if height <= width else (new_long, shortest_edge)


def center_crop(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Cut the centre (H, W) window of an (..., H0, W0) array, zero-padding first when it is smaller.

    Math: top = (H0 - H) // 2 (the odd pixel is cut at the bottom); a too-small image is padded
    with ceil((H - H0) / 2) zeros on top, the rest below (same for width).

    >>> center_crop(np.arange(16).reshape(4, 4), 2, 2)
    array([[ 5,  6],
           [ 9, 10]])
    """
    h0, w0 = array.shape[-2:]
    pad_h, pad_w = max(height - h0, 0), max(width - w0, 0)
    if pad_h or pad_w:
        top, left = -(-pad_h // 2), -(-pad_w // 2)
        pads = [(0, 0)] * (array.ndim - 2) + [(top, pad_h - top), (left, pad_w - left)]
        array = np.pad(array, pads)
        h0, w0 = array.shape[-2:]
    top, left = (h0 - height) // 2, (w0 - width) // 2
    return array[..., top : top + height, left : left + width]


# ============================================================================ the processor


@dataclass
class MobileNetV2ImageProcessor:
    """transformers' `MobileNetV2ImageProcessor` (PIL backend), in NumPy + Pillow.

    `__call__(images, segmentation_maps=None, return_tensors="np", **overrides)` returns
    {"pixel_values": float32 (N, 3, H, W)} and, with segmentation maps, "labels": int64 (N, H, W).
    Any field can be overridden for one call: processor(image, do_center_crop=False).
    """

    do_resize: bool = True
    size: dict[str, int] = field(default_factory=lambda: {"shortest_edge": 256})
    resample: int = Image.Resampling.BILINEAR
    do_center_crop: bool = True
    crop_size: dict[str, int] = field(default_factory=lambda: {"height": 224, "width": 224})
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    image_std: tuple[float, ...] = (0.5, 0.5, 0.5)
    do_reduce_labels: bool = False

    def __post_init__(self) -> None:
        # Older preprocessor_config.json files give plain ints: size 256, crop_size 224.
        if isinstance(self.size, int):
            self.size = {"shortest_edge": self.size}
        if isinstance(self.crop_size, int):
            self.crop_size = {"height": self.crop_size, "width": self.crop_size}
        self.size, self.crop_size = dict(self.size), dict(self.crop_size)
        self.image_mean, self.image_std = tuple(self.image_mean), tuple(self.image_std)
        if not ({"shortest_edge"} == set(self.size) or {"height", "width"} == set(self.size)):
            raise ValueError(
                f"MobileNetV2ImageProcessor.size={self.size} is invalid: use {{'shortest_edge': n}} or "
                "{'height': h, 'width': w}."
            )
        if set(self.crop_size) != {"height", "width"}:
            raise ValueError(f"MobileNetV2ImageProcessor.crop_size={self.crop_size} needs 'height' and 'width'.")
        for name, sizes in (("size", self.size), ("crop_size", self.crop_size)):
            for key, value in sizes.items():
                if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
                    raise ValueError(
                        f"MobileNetV2ImageProcessor.{name}[{key!r}]={value!r} is invalid: expected an int between 1 "
                        f"and {MAX_SIDE} (MAX_SIDE)."
                    )
        crop_pixels = self.crop_size["height"] * self.crop_size["width"]
        if crop_pixels > MAX_OUTPUT_PIXELS:
            raise ValueError(
                f"MobileNetV2ImageProcessor.crop_size={self.crop_size} is {crop_pixels:,} pixels, over the limit of "
                f"{MAX_OUTPUT_PIXELS:,} (MAX_OUTPUT_PIXELS)."
            )
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) <= 0:
            raise ValueError("MobileNetV2ImageProcessor: image_mean and image_std need 3 values (RGB), std > 0.")
        if int(self.resample) not in RESAMPLE_NAMES:
            raise ValueError(f"MobileNetV2ImageProcessor.resample={self.resample} is not a PIL resampling filter.")

    # ---------------------------------------------------------------- steps
    def resize(self, image: Image.Image, *, resample: int | None = None) -> Image.Image:
        """Resize with PIL to `size` (shortest edge, or exact height/width)."""
        if "shortest_edge" in self.size:
            h, w = shortest_edge_size(image.height, image.width, self.size["shortest_edge"])
        else:
            h, w = self.size["height"], self.size["width"]
        if h * w > MAX_OUTPUT_PIXELS or h < 1 or w < 1:
            raise ImageLoadError(
                f"resizing a {image.width}x{image.height} image with size={self.size} would make it {w}x{h}: "
                f"{h * w:,} pixels, over the limit of {MAX_OUTPUT_PIXELS:,} (MAX_OUTPUT_PIXELS in "
                "npmnv2.image_processing_mobilenet_v2). Check the image's aspect ratio and the processor's size, "
                "or raise the limit."
            )
        return image.resize((w, h), resample=self.resample if resample is None else resample)

    def _geometry(self, image: Image.Image, resample: int | None = None) -> np.ndarray:
        """resize -> (C, H, W) or (H, W) array -> center crop."""
        if self.do_resize:
            image = self.resize(image, resample=resample)
        array = np.asarray(image)
        if array.ndim == 3:
            array = array.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)
        if self.do_center_crop:
            array = center_crop(array, self.crop_size["height"], self.crop_size["width"])
        return array

    def preprocess_image(self, image: Any) -> np.ndarray:
        """One image -> (3, H, W) float32."""
        array = self._geometry(load_image(image))  # (3, H, W) uint8
        out = array.astype(np.float32)
        if self.do_rescale:
            out = (array.astype(np.float64) * self.rescale_factor).astype(np.float32)
        if self.do_normalize:
            mean = np.asarray(self.image_mean, np.float32)[:, None, None]
            std = np.asarray(self.image_std, np.float32)[:, None, None]
            out = (out - mean) / std
        return out

    def preprocess_segmentation_map(self, seg_map: Any) -> np.ndarray:
        """One class map -> (H, W) int64: nearest resampling, same crop, optional label reduction."""
        if isinstance(seg_map, (str, os.PathLike)):
            try:
                with Image.open(seg_map) as opened:
                    seg_map = np.array(opened)
            except (FileNotFoundError, UnidentifiedImageError, OSError) as err:
                raise ImageLoadError(f"segmentation map {os.fspath(seg_map)!r} cannot be read ({err}).") from None
        array = np.asarray(seg_map)
        if array.ndim != 2 or not (np.issubdtype(array.dtype, np.integer) and array.min() >= 0 and array.max() <= 255):
            raise ValueError(
                f"segmentation maps must be (H, W) class ids in 0..255, got shape {array.shape} dtype {array.dtype}."
            )
        array = array.astype(np.uint8)
        if self.do_reduce_labels:  # background 0 -> 255 (ignored), every other class id - 1
            array = np.where(array == 0, 255, array - 1).astype(np.uint8)
            array[array == 254] = 255
        return self._geometry(Image.fromarray(array), resample=Image.Resampling.NEAREST).astype(np.int64)

    # ---------------------------------------------------------------- API
    def __call__(
        self,
        images: Any,
        segmentation_maps: Any = None,
        return_tensors: str | None = "np",
        data_format: str | None = "channels_first",
        input_data_format: str | None = None,
        **overrides: Any,
    ) -> BatchFeature:
        """Preprocess images (and optional segmentation maps) as transformers' `preprocess` does.

        images: a path, a PIL image or an array (H, W, C) / (C, H, W), or a list of them.
        return_tensors: "np" or None (npmnv2 returns NumPy arrays only).
        data_format: "channels_first" (N, C, H, W), what the models take, or "channels_last".
        input_data_format: how array images are laid out, "channels_first" or "channels_last";
            None infers it as transformers does (a first axis of 1 or 3 is channels).
        overrides: any field of this processor for this call (do_resize=False, size={...}, ...);
            None means "the processor's own value", as in transformers.
        """
        if return_tensors not in ("np", None):
            raise ValueError(
                f"return_tensors={return_tensors!r}: npmnv2 is NumPy only and returns NumPy arrays; use "
                "return_tensors='np' (or torch.from_numpy(...) on the result if you need a tensor)."
            )
        formats = ("channels_first", "channels_last")
        for name, value in (("data_format", data_format), ("input_data_format", input_data_format)):
            value = getattr(value, "value", value)  # transformers' ChannelDimension enum
            if value is not None and value not in formats:
                raise ValueError(f"{name}={value!r}: expected 'channels_first' or 'channels_last'.")
        data_format = getattr(data_format, "value", data_format) or "channels_first"
        input_data_format = getattr(input_data_format, "value", input_data_format)
        processor = self.with_options({k: v for k, v in overrides.items() if v is not None})
        batch = list(images) if _is_batch(images) else [images]
        if not batch:
            raise ValueError("MobileNetV2ImageProcessor: got an empty list of images.")
        batch = [_channels_last(image, input_data_format) for image in batch]
        pixels = [processor.preprocess_image(image) for image in batch]
        if len({p.shape for p in pixels}) > 1:
            raise ValueError(
                "images end up with different sizes "
                f"{sorted({p.shape[1:] for p in pixels})}; enable do_center_crop or use an exact size."
            )
        stacked = np.stack(pixels)  # (N, 3, H, W)
        out = BatchFeature(pixel_values=stacked if data_format == "channels_first" else stacked.transpose(0, 2, 3, 1))
        if segmentation_maps is not None:
            maps = list(segmentation_maps) if isinstance(segmentation_maps, (list, tuple)) else [segmentation_maps]
            if len(maps) != len(batch):
                raise ValueError(f"got {len(batch)} images but {len(maps)} segmentation maps.")
            out["labels"] = np.stack([processor.preprocess_segmentation_map(m) for m in maps])  # (N, H, W)
        return out

    preprocess = __call__

    def integer_pixels(self, images: Any) -> np.ndarray:
        """The images resized as this processor resizes them, as raw uint8 pixels, NCHW: the
        quantized input of the TFLite MobileNetV2 models, whose input quantization (scale 1/128,
        zero point 128, or 1/127.5 and 127) maps the pixels 0..255 onto the [-1, 1] the float
        model sees. For `npmnv2.QuantizedMobileNetV2`."""
        raw = self(images, do_rescale=False, do_normalize=False)["pixel_values"]  # (N, 3, H, W) floats 0..255
        return np.clip(np.rint(raw), 0, 255).astype(np.uint8)

    def with_options(self, overrides: dict[str, Any]) -> MobileNetV2ImageProcessor:
        """A copy with some fields changed (a TypeError naming any unknown field)."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"MobileNetV2ImageProcessor got unknown options {unknown}; valid: {sorted(names)}.")
        return replace(self, **overrides) if overrides else self

    def post_process_semantic_segmentation(
        self, outputs: Any, target_sizes: Sequence[tuple[int, int]] | None = None
    ) -> list[np.ndarray]:
        """Class maps (H, W) int64 from segmentation logits (N, L, h, w): optionally resized
        bilinearly (align_corners=False) to each target size first, then argmax over classes."""
        logits = outputs.logits if hasattr(outputs, "logits") else np.asarray(outputs)
        if logits.ndim != 4:
            raise ValueError(f"post_process_semantic_segmentation expects logits (N, L, H, W), got {logits.shape}.")
        if target_sizes is not None and len(target_sizes) != len(logits):
            raise ValueError(
                f"got {len(target_sizes)} target sizes for a batch of {len(logits)}; give one (height, width) each."
            )
        maps = []
        for i in range(len(logits)):
            scores = nchw_to_nhwc(logits[i : i + 1])  # (1, h, w, L)
            if target_sizes is not None:
                scores = resize_bilinear(scores, tuple(int(s) for s in target_sizes[i]), align_corners=False)
            maps.append(scores[0].argmax(axis=-1).astype(np.int64))  # (H, W)
        return maps

    # ---------------------------------------------------------------- files
    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(resample=int(self.resample), image_mean=list(self.image_mean), image_std=list(self.image_std))
        data["image_processor_type"] = "MobileNetV2ImageProcessor"
        return data

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write preprocessor_config.json (transformers' format), atomically (`formats.atomic.write_folder`)."""
        from .formats.atomic import write_folder

        return write_folder(directory, self.checkpoint_files())

    def checkpoint_files(self) -> dict[str, bytes]:
        """{"preprocessor_config.json": its bytes}, as `save_pretrained` writes them."""
        from .weights import json_bytes

        return {PREPROCESSOR_NAME: json_bytes(self.to_dict())}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MobileNetV2ImageProcessor:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def fixed_output_hw(self) -> tuple[int, int] | None:
        """(H, W) of every image this processor makes, when that does not depend on the image: its
        crop, or a resize to a fixed height and width; None otherwise (a shortest-edge resize)."""
        if self.do_center_crop and {"height", "width"} <= set(self.crop_size):
            return int(self.crop_size["height"]), int(self.crop_size["width"])
        if self.do_resize and {"height", "width"} <= set(self.size):
            return int(self.size["height"]), int(self.size["width"])
        return None

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike) -> MobileNetV2ImageProcessor:
        """The processor that belongs to a weights source: its preprocessor_config.json when there is
        one; for a .tflite file, an exact resize to the model's input size (its input is quantized
        with scale 1/128, zero point 128, i.e. the same [-1, 1] range); otherwise a preset from the
        model's config.json (224: transformers' defaults; other sizes: shortest edge = crop = size)."""
        from .checkpoints import resolve_checkpoint
        from .formats import CONFIG_NAME
        from .formats.errors import WeightFileError
        from .formats.json_file import read_json_object

        path = resolve_checkpoint(source)
        if path.suffix == ".tflite":
            from .tflite.graph import read_tflite_input_size

            h, w = read_tflite_input_size(path)
            return cls(size={"height": h, "width": w}, do_center_crop=False)
        folder = path if path.is_dir() else path.parent
        if (folder / PREPROCESSOR_NAME).is_file():
            processor = cls.from_dict(read_json_object(folder / PREPROCESSOR_NAME, "preprocessor config"))
            hw = processor.fixed_output_hw()
            if hw is not None:  # the model's activations at that size, under the config's cap
                from .configuration_mobilenet_v2 import MobileNetV2Config

                config = read_json_object(folder / CONFIG_NAME, "config") if (folder / CONFIG_NAME).is_file() else {}
                known = {k: config[k] for k in ("depth_multiplier", "expand_ratio") if k in config}
                where = f"preprocessor config {str(folder / PREPROCESSOR_NAME)!r} (resizes to {hw[0]}x{hw[1]})"
                try:
                    MobileNetV2Config(**known).check_activation_size(*hw, where)
                except (ValueError, TypeError) as err:
                    raise WeightFileError(" ".join(str(err).split())) from None
            return processor
        if (folder / CONFIG_NAME).is_file():
            from .configuration_mobilenet_v2 import MobileNetV2Config

            config = read_json_object(folder / CONFIG_NAME, "config")
            try:  # the config's own checks (image_size: ints from 32 to MAX_IMAGE_SIDE)
                h, w = MobileNetV2Config(image_size=config.get("image_size", 224)).image_hw
            except ValueError as err:
                raise WeightFileError(f"config file {str(folder / CONFIG_NAME)!r}: {err}") from None
            if (h, w) != (224, 224):
                return cls(size={"shortest_edge": min(h, w)}, crop_size={"height": h, "width": w})
        return cls()


class BatchFeature(dict):
    """The processor's output: a dict ({"pixel_values": ...}) that also reads as attributes
    (`inputs.pixel_values`), like transformers' BatchFeature."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchFeature has no {name!r}; it holds {list(self)}.") from None


def _channels_last(image: Any, input_data_format: str | None) -> Any:
    """An array image as (H, W, C): (C, H, W) arrays are transposed when input_data_format says
    channels_first, or when it is None and the first axis is 1 or 3 (transformers' inference)."""
    if not isinstance(image, np.ndarray) or image.ndim != 3:
        return image
    first = input_data_format == "channels_first" or (
        input_data_format is None and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3, 4)
    )
    return image.transpose(1, 2, 0) if first else image


def _is_batch(images: Any) -> bool:
    if isinstance(images, (list, tuple)):
        return True
    return isinstance(images, np.ndarray) and images.ndim == 4
