"""Whatever image a user brings is read as uint8 RGB, or refused with a clear message."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srgan_core.images import ImageError, downscale_x4, load_image, modcrop


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_grayscale_is_replicated(photo: np.ndarray) -> None:
    gray = Image.fromarray(photo).convert("L")
    out = load_image(encode(gray))
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 2]).all()


def test_rgba_is_composited_over_white() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red, fully transparent on the left half
    rgba[:, 2:, 3] = 255
    out = load_image(encode(Image.fromarray(rgba, "RGBA")))
    assert (out[:, :2] == 255).all()
    assert (out[:, 2:] == [200, 0, 0]).all()


def test_16bit_is_scaled_to_8bit() -> None:
    arr = np.array([[0, 65535], [32768, 257]], dtype=np.uint16)
    out = load_image(encode(Image.fromarray(arr)))
    assert out[..., 0].tolist() == [[0, 255], [128, 1]]


def test_arrays_with_alpha_are_composited_on_their_own_scale() -> None:
    half_grey = np.zeros((2, 2, 4))
    half_grey[..., :3], half_grey[..., 3] = 0.5, 1.0
    assert (load_image(half_grey) == 128).all()  # float in [0, 1], opaque
    dark = np.zeros((2, 2, 4), np.uint16)
    dark[..., :3], dark[..., 3] = 100, 65535
    assert (load_image(dark) == 0).all()  # 100 of 65535 is black, not 100 of 255
    clear = np.zeros((2, 2, 4), np.float32)
    assert (load_image(clear) == 255).all()  # fully transparent: white
    with pytest.raises(ImageError, match="finite values in"):
        load_image(np.full((2, 2, 3), np.nan))


def test_a_decompression_bomb_is_refused_with_the_limit(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    Image.new("1", (15000, 15000)).save(bomb)  # a few KB on disk, 225 megapixels once decoded
    with pytest.raises(ImageError, match="larger than the 64,000,000-pixel limit"):
        load_image(bomb)


def test_cmyk_is_converted(photo: np.ndarray) -> None:
    cmyk = Image.fromarray(photo).convert("CMYK")
    out = load_image(encode(cmyk, "JPEG", quality=95))
    assert out.shape == photo.shape
    assert np.abs(out.astype(int) - photo).mean() < 10


def test_exif_rotation_is_applied(photo: np.ndarray) -> None:
    img = Image.fromarray(photo)  # 64 wide, 48 high
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = load_image(encode(img, "JPEG", exif=exif, quality=95))
    assert out.shape == (64, 48, 3)


NOISE = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
TRUNCATED_PNG = encode(NOISE)[:2000]


@pytest.mark.parametrize(
    ("payload", "message"),
    [(b"", "not an image"), (b"%PDF-1.4 not a picture", "not an image"), (TRUNCATED_PNG, "could not be read")],
)
def test_bad_bytes_are_refused(payload: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        load_image(payload)


def test_missing_file_and_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_downscale_modcrops_and_refuses_tiny_images(photo: np.ndarray) -> None:
    assert downscale_x4(photo[:47, :63]).shape == (11, 15, 3)
    assert modcrop(photo[:47, :63]).shape == (44, 60, 3)
    with pytest.raises(ImageError, match="too small"):
        downscale_x4(photo[:1, :1])
