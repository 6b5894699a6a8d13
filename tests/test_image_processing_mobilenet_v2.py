"""MobileNetV2ImageProcessor against transformers' PIL-backend processor, on real images."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

from npmnv2.image_processing_mobilenet_v2 import ImageLoadError, MobileNetV2ImageProcessor, load_image


@pytest.fixture(scope="module")
def hf():
    return transformers.MobileNetV2ImageProcessorPil()


def real_images(coral_dir):
    cat = Image.open(coral_dir / "cat.bmp").convert("RGB")
    hopper = Image.open(coral_dir / "grace_hopper.bmp").convert("RGB")
    return {
        "cat": cat,
        "hopper-odd-crop": hopper.crop((3, 7, 3 + 301, 7 + 227)),  # 301 x 227, odd both ways
        "bird-tall": Image.open(coral_dir / "bird.bmp").convert("RGB").crop((0, 0, 131, 259)),
        "sunflower-tiny": Image.open(coral_dir / "sunflower.bmp").convert("RGB").resize((33, 17)),
        "dragonfly-grayscale": Image.open(coral_dir / "dragonfly.bmp").convert("L"),
        "cat-palette": cat.convert("P", palette=Image.Palette.ADAPTIVE),
        "cat-rgba": cat.convert("RGBA"),
        "cat-cmyk": cat.convert("CMYK"),
    }


@pytest.mark.parametrize(
    "name",
    [
        "cat",
        "hopper-odd-crop",
        "bird-tall",
        "sunflower-tiny",
        "dragonfly-grayscale",
        "cat-palette",
        "cat-rgba",
        "cat-cmyk",
    ],
)
def test_pixel_values_match_transformers_pil_backend(coral_dir, hf, name):
    image = real_images(coral_dir)[name]
    ours = MobileNetV2ImageProcessor()(image)["pixel_values"]
    theirs = hf(image.convert("RGB"), return_tensors="np")["pixel_values"]  # conversion is ours: PIL convert("RGB")
    assert ours.shape == theirs.shape == (1, 3, 224, 224) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=0)


def test_small_image_is_zero_padded_by_the_center_crop_like_transformers(coral_dir, hf):
    image = real_images(coral_dir)["sunflower-tiny"]
    ours = MobileNetV2ImageProcessor()(image, do_resize=False)["pixel_values"]
    theirs = hf(image, do_resize=False, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=0)
    assert ours[0, :, 0, 0].tolist() == [-1.0, -1.0, -1.0]  # padding is black


def test_batches_paths_arrays_and_overrides(coral_dir, hf):
    images = [coral_dir / "cat.bmp", np.asarray(Image.open(coral_dir / "bird.bmp").convert("RGB"))]
    ours = MobileNetV2ImageProcessor()(images, crop_size={"height": 200, "width": 180})["pixel_values"]
    theirs = hf(
        [Image.open(p).convert("RGB") if not isinstance(p, np.ndarray) else p for p in images],
        crop_size={"height": 200, "width": 180},
        return_tensors="np",
    )["pixel_values"]
    assert ours.shape == (2, 3, 200, 180)
    np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=0)


def test_float_arrays_are_pixels_in_unit_range(coral_dir):
    array = np.asarray(Image.open(coral_dir / "cat.bmp").convert("RGB"))
    processor = MobileNetV2ImageProcessor()
    np.testing.assert_array_equal(processor(array / 255.0)["pixel_values"], processor(array)["pixel_values"])
    with pytest.raises(ValueError, match=r"float image arrays must hold pixels in \[0, 1\]"):
        processor(array.astype(np.float32))


def test_segmentation_maps_become_int64_labels_like_transformers(coral_dir, hf):
    image = Image.open(coral_dir / "bird_segmentation.bmp").convert("RGB")
    mask = np.asarray(Image.open(coral_dir / "bird_segmentation_mask.bmp"))
    for reduce in (False, True):
        ours = MobileNetV2ImageProcessor(do_reduce_labels=reduce)(image, segmentation_maps=mask)
        theirs = hf(image, segmentation_maps=Image.fromarray(mask), do_reduce_labels=reduce, return_tensors="np")
        assert ours["labels"].dtype == np.int64 and ours["labels"].shape == (1, 224, 224)
        np.testing.assert_array_equal(ours["labels"], theirs["labels"])
        np.testing.assert_allclose(ours["pixel_values"], theirs["pixel_values"], atol=1e-6, rtol=0)


def test_post_process_semantic_segmentation_equals_transformers():
    logits = np.random.default_rng(0).normal(size=(2, 21, 33, 33)).astype(np.float32)

    class Out:
        pass

    out = Out()
    out.logits = torch.from_numpy(logits)
    theirs = transformers.MobileNetV2ImageProcessorPil().post_process_semantic_segmentation(
        out, target_sizes=[(513, 513), (100, 75)]
    )
    ours = MobileNetV2ImageProcessor().post_process_semantic_segmentation(logits, target_sizes=[(513, 513), (100, 75)])
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b.numpy())
    plain = MobileNetV2ImageProcessor().post_process_semantic_segmentation(logits)
    np.testing.assert_array_equal(plain[1], logits[1].argmax(0))


def test_exif_orientation_is_honoured():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    buffer.seek(0)
    assert load_image(Image.open(buffer)).size == (20, 40)


def test_sixteen_bit_images_keep_their_top_byte():
    image = Image.fromarray(np.full((8, 8), 0xAB00, dtype=np.uint16))
    assert load_image(image).getpixel((0, 0)) == (0xAB, 0xAB, 0xAB)


def test_save_and_load_preprocessor_config(tmp_path, hf):
    processor = MobileNetV2ImageProcessor(size={"shortest_edge": 513}, crop_size={"height": 513, "width": 513})
    processor.save_pretrained(tmp_path)
    assert MobileNetV2ImageProcessor.from_pretrained(tmp_path) == processor
    assert transformers.MobileNetV2ImageProcessorPil.from_pretrained(tmp_path).crop_size["height"] == 513
    hf.save_pretrained(tmp_path / "hf")
    assert MobileNetV2ImageProcessor.from_pretrained(tmp_path / "hf") == MobileNetV2ImageProcessor()


def test_tflite_preset_resizes_to_the_model_input(coral_dir):
    processor = MobileNetV2ImageProcessor.from_pretrained(coral_dir / "deeplabv3_mnv2_pascal_quant.tflite")
    assert processor.size == {"height": 513, "width": 513} and not processor.do_center_crop
    assert processor(coral_dir / "cat.bmp")["pixel_values"].shape == (1, 3, 513, 513)


@pytest.mark.parametrize(
    "content,message", [(b"", "not a readable image"), (b"GIF89a garbage", "not a readable image")]
)
def test_unreadable_images_raise_clearly(tmp_path, content, message):
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(ImageLoadError, match=message):
        MobileNetV2ImageProcessor()(tmp_path / "bad.png")


def test_missing_image_and_wrong_layouts(tmp_path):
    with pytest.raises(ImageLoadError, match="does not exist"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ValueError, match=r"looks channels-first; pass it as \(H, W, C\)"):
        load_image(np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(TypeError, match="unknown options"):
        MobileNetV2ImageProcessor()(np.zeros((32, 32, 3), np.uint8), do_rezise=False)


def test_legacy_int_sizes_in_preprocessor_config(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text('{"size": 256, "crop_size": 224, "do_center_crop": true}')
    processor = MobileNetV2ImageProcessor.from_pretrained(tmp_path)
    assert processor.size == {"shortest_edge": 256} and processor.crop_size == {"height": 224, "width": 224}
