"""A stimulus as a rater's browser receives it: its pixels as an uncompressed RGB PNG (zlib's stored blocks), so that
every method's version of one original image arrives with the same length and the same chunks, byte for byte but the
pixels and their checksums. A compressed PNG tells its method by its size (nearest-neighbour compresses far better),
and padding it to a common length would still tell it by the length of its image data or of its padding."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from study import store


def uncompressed_png(data: bytes) -> bytes:
    """The image in `data` as an RGB PNG without compression or metadata: its length depends on its size alone.
    ValueError when `data` is no readable image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            rgb = image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a readable image ({exc})") from None
    out = io.BytesIO()
    rgb.save(out, format="PNG", compress_level=0)
    return out.getvalue()


def stimulus_png(folder: Path, stimulus: store.Stimulus) -> bytes:
    """The stimulus's file (under the database's `folder`) as a rater receives it (`uncompressed_png`). OSError when
    the file cannot be read, ValueError when it is damaged."""
    return uncompressed_png((folder / stimulus.file).read_bytes())
