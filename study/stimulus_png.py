"""A stimulus as a rater's browser receives it: its PNG grown to the length of the largest file of its scene (every
method of one original image), so that a file's length tells nothing of the method that made it (PNG sizes differ by
method: nearest-neighbour compresses far better)."""

from __future__ import annotations

import sqlite3
import struct
import zlib
from pathlib import Path

from study import store

PNG_CHUNK_BYTES = 12  # a PNG chunk's length, type and CRC fields
PAD_CHUNK = b"paDd"  # the padding chunk's type: ancillary, private, safe to copy


def padded_png(data: bytes, length: int) -> bytes:
    """A PNG grown to `length` bytes by a private ancillary chunk before IEND, which every decoder skips."""
    fill = length - len(data) - PNG_CHUNK_BYTES
    end = data.rfind(b"IEND") - 4
    if fill < 0 or end < 8:
        raise ValueError(f"cannot pad a {len(data)}-byte PNG to {length} bytes")
    body = PAD_CHUNK + bytes(fill)
    chunk = struct.pack(">I", fill) + body + struct.pack(">I", zlib.crc32(body))
    return data[:end] + chunk + data[end:]


def scene_png(con: sqlite3.Connection, folder: Path, stimulus: store.Stimulus) -> bytes:
    """The stimulus's PNG (its file under the database's `folder`), padded to one chunk more than the largest file of
    its scene, repeats and every method alike. OSError when its file cannot be read, ValueError when it is damaged;
    another method's missing file does not hide this one."""
    data = (folder / stimulus.file).read_bytes()
    sizes = [len(data)]
    for file in store.scene_files(con, stimulus):
        try:
            sizes.append((folder / file).stat().st_size)
        except OSError:
            continue
    return padded_png(data, max(sizes) + PNG_CHUNK_BYTES)
