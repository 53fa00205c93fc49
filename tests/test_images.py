"""Whatever image a user brings is read as uint8 RGB, or refused with a clear message."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from srgan_core.images import (
    ImageError,
    downscale_x4,
    input_notes,
    load_image,
    modcrop,
    save_png,
)


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


def test_a_save_stopped_midway_keeps_the_file_it_would_replace_and_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "out.png"
    save_png(np.zeros((4, 4, 3), np.uint8), dest)
    before = dest.read_bytes()

    def stopped(im: Image.Image, fp, filename) -> None:  # a Ctrl-C after the first bytes are written
        fp.write(before[:20])
        raise KeyboardInterrupt

    monkeypatch.setitem(Image.SAVE, "PNG", stopped)
    with pytest.raises(KeyboardInterrupt):
        save_png(np.full((4, 4, 3), 255, np.uint8), dest)
    assert dest.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_a_save_replaces_the_file_and_leaves_nothing_else(tmp_path: Path) -> None:
    dest = tmp_path / "out.png"
    save_png(np.zeros((4, 4, 3), np.uint8), dest)
    save_png(np.full((4, 4, 3), 255, np.uint8), dest)
    assert (load_image(dest) == 255).all()
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    with pytest.raises(IsADirectoryError):
        save_png(np.zeros((4, 4, 3), np.uint8), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_downscale_modcrops_and_refuses_tiny_images(photo: np.ndarray) -> None:
    assert downscale_x4(photo[:47, :63]).shape == (11, 15, 3)
    assert modcrop(photo[:47, :63]).shape == (44, 60, 3)
    with pytest.raises(ImageError, match="too small"):
        downscale_x4(photo[:1, :1])


def _png_rgb16(path: Path, pixels: np.ndarray) -> None:
    """A 16-bit RGB PNG (Pillow cannot write one; it reads it as 8-bit RGB)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", pixels.shape[1], pixels.shape[0], 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_input_notes_name_dropped_frames_bits_and_transparency(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "blue", "green")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(tmp_path / "gray16.png")
    _png_rgb16(tmp_path / "rgb16.png", np.full((16, 16, 3), 40000, np.uint16))
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[:4, :, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "quarter.png")
    Image.new("RGB", (16, 16), "red").save(tmp_path / "plain.png")
    notes = {name: input_notes(tmp_path / name) for name in ("anim.gif", "gray16.png", "rgb16.png", "quarter.png", "plain.png")}
    assert notes["anim.gif"] == ["has 3 frames: only the first is used"]
    assert [len(notes[n]) for n in ("gray16.png", "rgb16.png")] == [1, 1] and all("8 bits" in notes[n][0] for n in ("gray16.png", "rgb16.png"))
    assert load_image(tmp_path / "rgb16.png")[0, 0].tolist() == [156] * 3  # its top byte (40000 = 0x9C40)
    transparency = (
        "has transparency (75% of its pixels): it is flattened onto a white background, which is what every method sees, "
        "and the result has no alpha"
    )
    assert notes["quarter.png"] == [transparency]
    assert notes["plain.png"] == [] and input_notes(tmp_path / "missing.png") == []


def test_input_notes_say_nothing_of_files_read_without_loss(tmp_path: Path) -> None:
    """16 bits per pixel (RGB565) is not 16 bits per channel, and 32-bit integers holding 8-bit values lose nothing."""
    header = struct.pack("<IiiHHIIiiII", 40, 4, -4, 1, 16, 3, 32, 2835, 2835, 0, 0) + struct.pack("<III", 0xF800, 0x07E0, 0x001F)
    offset = 14 + len(header)
    (tmp_path / "rgb565.bmp").write_bytes(b"BM" + struct.pack("<IHHI", offset + 32, 0, 0, offset) + header + bytes(32))
    Image.fromarray(np.full((8, 8), 200, np.int32)).save(tmp_path / "small.tif")
    Image.fromarray(np.full((8, 8), 2000, np.int32)).save(tmp_path / "large.tif")
    assert Image.open(tmp_path / "rgb565.bmp").mode == "RGB" and input_notes(tmp_path / "rgb565.bmp") == []
    assert input_notes(tmp_path / "small.tif") == [] and "8 bits" in input_notes(tmp_path / "large.tif")[0]


def rgb_profile(description: str, primaries: tuple[tuple[float, float, float], ...], gamma: float) -> bytes:
    """A minimal ICC v2 RGB matrix/TRC profile (D50 white point, one gamma for all three channels)."""

    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + bytes(4) + s15(x) + s15(y) + s15(z)

    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)
    text = description.encode() + b"\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(4 + 4 + 2 + 1 + 67)
    tags = [(b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)), *((name, xyz(*p)) for name, p in zip((b"rXYZ", b"gXYZ", b"bXYZ"), primaries)),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    table, data, offset = b"", b"", 128 + 4 + 12 * len(tags)
    for name, body in tags:
        body += bytes(-len(body) % 4)
        table += name + struct.pack(">II", offset + len(data), len(body))
        data += body
    body = struct.pack(">I", len(tags)) + table + data
    header = (struct.pack(">I", 128 + len(body)) + bytes(4) + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ " + bytes(12) + b"acsp"
              + bytes(28) + s15(0.9642) + s15(1.0) + s15(0.8249) + bytes(48))
    return header + body


# Display P3's primaries adapted to D50 (as in Apple's profile), with a plain 2.2 gamma
P3 = rgb_profile("Display P3 (test)", ((0.5151, 0.2412, -0.0011), (0.2920, 0.6922, 0.0419), (0.1571, 0.0666, 0.7841)), 2.2)


def test_a_colour_profile_is_converted_to_srgb_and_named(tmp_path: Path) -> None:
    """Wide-gamut pixels read as sRGB would shift colours by tens of levels: they are converted, and the note says so."""
    pixels = np.zeros((8, 8, 3), np.uint8)
    pixels[:4], pixels[4:] = (40, 180, 60), (200, 60, 40)
    Image.fromarray(pixels).save(tmp_path / "p3.png", icc_profile=P3)
    Image.fromarray(pixels).save(tmp_path / "p3.jpg", quality=100, icc_profile=P3)
    Image.fromarray(pixels[:, :, 0]).save(tmp_path / "gray.png", icc_profile=P3)  # an RGB profile on a grayscale image
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(pixels).save(tmp_path / "srgb.png", icc_profile=srgb)
    converted = load_image(tmp_path / "p3.png")
    assert np.abs(converted[0, 0].astype(int) - (0, 185, 23)).max() <= 2  # P3 green is outside sRGB: clipped to its gamut
    assert np.abs(converted[-1, 0].astype(int) - (219, 37, 13)).max() <= 2
    jpeg = load_image(tmp_path / "p3.jpg").astype(int)  # the corners: away from the edge JPEG's chroma blurs
    assert np.abs(jpeg[[0, -1], 0] - converted[[0, -1], 0]).max() <= 3
    assert input_notes(tmp_path / "p3.png") == ["has a colour profile (Display P3 (test)): its colours are converted to sRGB, which every method works in"]
    assert np.array_equal(load_image(tmp_path / "srgb.png"), pixels) and input_notes(tmp_path / "srgb.png") == []
    assert np.array_equal(load_image(tmp_path / "gray.png")[:, :, 0], pixels[:, :, 0])
    assert input_notes(tmp_path / "gray.png") == ["has a colour profile (Display P3 (test)) that could not be applied: its values are read as sRGB"]


def test_a_transparency_note_never_says_0_percent(tmp_path: Path) -> None:
    rgba = np.full((40, 48, 4), 255, np.uint8)
    rgba[0, :8, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "few.png")
    assert "has transparency (under 1% of its pixels)" in input_notes(tmp_path / "few.png")[0]
