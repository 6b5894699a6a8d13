"""Images open through an allow-list of formats, their size is checked from the header before any
decoding, and every decoder failure is an ImageLoadError naming the file (issue 20, points 8 and 10)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from npmnv2.image_processing_mobilenet_v2 import IMAGE_FORMATS, ImageLoadError, load_image


def test_the_allowed_formats_open(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (40, 48, 3)).astype(np.uint8)
    for fmt, suffix in (("PNG", "png"), ("JPEG", "jpg"), ("BMP", "bmp"), ("GIF", "gif"), ("WEBP", "webp"),
                        ("TIFF", "tif")):  # fmt: skip
        path = tmp_path / f"x.{suffix}"
        Image.fromarray(pixels).save(path, format=fmt)
        assert load_image(path).size == (48, 40)
    assert set(IMAGE_FORMATS) == {"PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF"}


def test_an_eps_file_is_refused_before_any_decoder_runs(tmp_path):
    path = tmp_path / "evil.eps"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(ImageLoadError, match=r"evil\.eps.*not a readable image in one of the formats npmnv2 opens"):
        load_image(path)


def _png_header_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def test_a_small_file_announcing_a_huge_image_is_refused_from_its_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_claiming(9400, 9400))
    assert path.stat().st_size < 200
    with pytest.raises(ImageLoadError, match=r"announces 9400x9400 = 88,360,000 pixels.*not decoded"):
        load_image(path)


def test_a_truncated_image_is_an_image_load_error(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 7).save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ImageLoadError, match=r"broken\.png"):
        load_image(broken)
