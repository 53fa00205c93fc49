"""Reading any image a user brings into uint8 RGB, and the paper's LR degradation."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from srgan_core.imresize import imresize
from srgan_core.method_specs import SCALE
from srgan_core.paths import replacing

MAX_PIXELS = 64_000_000  # refuse decompression bombs; far above any input the project needs
# modes converted to sRGB by their ICC profile: the profile's colour space, and the mode converted to
PROFILED_MODES = {"RGB": ("RGB ", "RGB"), "RGBA": ("RGB ", "RGBA"), "CMYK": ("CMYK", "RGB"), "L": ("GRAY", "RGB")}
SRGB = ImageCms.createProfile("sRGB")
SIXTEEN_BIT = re.compile(r"(I|L|LA|RGB|RGBA|RGBX|CMYK);16[BLN]?")  # Pillow's raw modes of 16 bits per channel


class ImageError(ValueError):
    """An input that is not a usable image, with a message a user can act on."""


def load_image(src: str | Path | bytes | Image.Image | np.ndarray) -> np.ndarray:
    """Any image -> HxWx3 uint8 sRGB: EXIF rotation and an ICC profile applied, grayscale replicated,
    alpha composited over white, 16-bit and float scaled to 8 bit, CMYK/palette converted."""
    if isinstance(src, np.ndarray):
        return _array_to_rgb(src)
    if isinstance(src, Image.Image):
        return _pil_to_rgb(src)
    name = "the image bytes" if isinstance(src, bytes) else str(src)
    try:
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ImageError(f"{name} is {img.width}x{img.height}: larger than the {MAX_PIXELS:,}-pixel limit")
            img.load()
            return _pil_to_rgb(img)
    except ImageError as exc:
        if name in str(exc):
            raise
        raise ImageError(f"{name}: {exc}") from None
    except Image.DecompressionBombError:  # Pillow's own refusal, at twice its pixel limit, before ours can look
        raise ImageError(f"{name} is larger than the {MAX_PIXELS:,}-pixel limit") from None
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name} is a folder, not an image") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image that Pillow can read (PNG, JPEG, TIFF, BMP, WebP, ...)") from None
    except (OSError, SyntaxError) as exc:
        raise ImageError(f"{name} could not be read: {exc}") from None


def input_notes(path: str | Path) -> list[str]:
    """What `load_image` changes in an image file beyond decoding it, each as a clause after the file's name
    ("has 3 frames: ..."): frames it drops, bits it drops, transparency it flattens, a colour profile it converts
    to sRGB. Empty when it changes nothing."""
    try:
        with Image.open(path) as img:
            frames = getattr(img, "n_frames", 1)
            rawmode = img.tile[0].args if img.tile else None
            rawmode = rawmode[0] if isinstance(rawmode, tuple) and rawmode else rawmode
            sixteen = isinstance(rawmode, str) and SIXTEEN_BIT.fullmatch(rawmode) is not None  # not RGB565's "BGR;16"
            # a 32-bit integer image is read without loss while its values fit in 8 bits
            deep = img.mode.startswith("I;16") or img.mode == "F" or sixteen or (img.mode == "I" and np.asarray(img).max() > 255)
            alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
            fraction = float(np.mean(np.asarray(img.convert("RGBA"))[:, :, 3] < 255)) if alpha else 0.0  # not fully opaque
            profile, description = colour_profile(img)
    except (OSError, ValueError):  # not readable: load_image says why
        return []
    notes = []
    if frames > 1:
        notes.append(f"has {frames} frames: only the first is used")
    if deep:
        notes.append("has more than 8 bits per channel: it is read at 8 bits, as every method works on 8-bit images")
    if fraction:
        share = "under 1%" if fraction < 0.005 else f"{fraction:.0%}"
        notes.append(
            f"has transparency ({share} of its pixels): it is flattened onto a white background, which is what "
            "every method sees, and the result has no alpha"
        )
    if profile is not None:
        notes.append(f"has a colour profile ({description}): its colours are converted to sRGB, which every method works in")
    elif description is not None and "srgb" not in description.lower():
        notes.append(f"has a colour profile ({description}) that could not be applied: its values are read as sRGB")
    return notes


def colour_profile(img: Image.Image) -> tuple[ImageCms.ImageCmsProfile | None, str | None]:
    """The embedded ICC profile to convert `img` from, and its description: (None, None) without one; (None,
    description) for an sRGB one (nothing to convert), or one that cannot be read or does not fit the image's mode."""
    icc = img.info.get("icc_profile")
    if not icc:
        return None, None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = ImageCms.getProfileDescription(profile).strip() or "unnamed"
    except (ImageCms.PyCMSError, OSError, TypeError, ValueError):
        return None, "unreadable"
    fits = PROFILED_MODES.get(img.mode, ("", ""))[0] == profile.profile.xcolor_space
    return (profile if fits and "srgb" not in description.lower() else None), description


def _to_srgb(img: Image.Image) -> Image.Image:
    """`img` converted from its embedded colour profile to sRGB (what every method and metric assume); unchanged
    without a profile, with an sRGB one, or with one `colour_profile` does not use."""
    profile, _ = colour_profile(img)
    if profile is None:
        return img
    try:
        return ImageCms.profileToProfile(img, profile, SRGB, outputMode=PROFILED_MODES[img.mode][1])
    except ImageCms.PyCMSError:  # a profile LittleCMS cannot use: the pixels are read as sRGB
        return img


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    img = _to_srgb(ImageOps.exif_transpose(img))
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return _array_to_rgb(np.round(arr / peak * 255).clip(0, 255).astype(np.uint8))
    if img.mode == "F":
        return _array_to_rgb(np.asarray(img))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return _array_to_rgb(np.asarray(img.convert("RGB")))


def _array_to_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError("the image is empty (0 pixels)")
    if arr.dtype == np.uint8 and arr.shape[2] == 3:
        return np.array(arr, order="C")  # a writable copy (Pillow's arrays are read-only)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise ImageError("a float image must hold finite values in [0, 1]")
        unit = arr.astype(np.float64)
    else:  # 16-bit on its full range, any other integer type on 8-bit levels
        unit = arr.astype(np.float64) / (65535.0 if arr.dtype == np.uint16 else 255.0)
    if unit.shape[2] == 4:  # composite over white, in [0, 1] whatever the type
        alpha = unit[:, :, 3:].clip(0, 1)
        unit = unit[:, :, :3] * alpha + (1 - alpha)
    return np.ascontiguousarray(np.round(unit * 255).clip(0, 255).astype(np.uint8))


def modcrop(img: np.ndarray, mod: int = SCALE) -> np.ndarray:
    """Crop the bottom/right so height and width are multiples of `mod`."""
    h, w = img.shape[:2]
    return img[: h - h % mod, : w - w % mod]


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 1x3xHxW float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().div_(255)


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """1x3xHxW float in [0, 1] -> HxWx3 uint8, rounded."""
    return t[0].clamp(0, 1).mul_(255).round_().byte().permute(1, 2, 0).cpu().numpy()  # one float copy, not three


def downscale_x4(hr: np.ndarray) -> np.ndarray:
    """The paper's LR image: MATLAB bicubic /4 of the mod-cropped HR, rounded to uint8."""
    hr = modcrop(hr, SCALE)
    if min(hr.shape[:2]) < SCALE:
        raise ImageError(f"a {hr.shape[1]}x{hr.shape[0]} image is too small to downscale x{SCALE}")
    return to_uint8(imresize(to_tensor(hr).double(), 1 / SCALE))


def save_png(img: np.ndarray, path: str | Path) -> None:
    """Lossless PNG with no metadata, written to a hidden file beside `path` and renamed onto it: an error or a
    Ctrl-C midway leaves the file it would replace as it was, and no partial file. It needs a folder it can write in,
    and replaces a file (or a link) at `path` by a new one, with this process's default permissions."""
    with replacing(Path(path)) as partial, open(partial, "xb") as file:
        Image.fromarray(img).save(file, format="PNG", optimize=False)
