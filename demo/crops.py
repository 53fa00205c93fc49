"""The zoomed view shown for every method: one window, placed by a centre given in image fractions."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

VIEW = 384  # side of a zoomed crop on screen, in pixels: the window is VIEW / zoom output pixels wide
MAX_ZOOM = 8


@dataclass(frozen=True)
class Box:
    top: int
    left: int
    height: int
    width: int

    def cut(self, image: np.ndarray) -> np.ndarray:
        return image[self.top : self.top + self.height, self.left : self.left + self.width]


def crop_box(shape: tuple[int, ...], centre: tuple[float, float], zoom: int, view: int = VIEW) -> Box:
    """The square window of side `view / zoom` (clipped to the image) centred as near `centre` as fits.

    `centre` is (x, y) as fractions of the width and height, so one centre places the same window on
    the input, on every 4x output and on the original alike."""
    if not 1 <= zoom <= MAX_ZOOM:
        raise ValueError(f"zoom must be between 1 and {MAX_ZOOM}, got {zoom}")
    height, width = shape[:2]
    side = max(1, round(view / zoom))
    box_h, box_w = min(side, height), min(side, width)
    fx, fy = (min(max(float(c), 0.0), 1.0) for c in centre)
    left = min(max(round(fx * width - box_w / 2), 0), width - box_w)
    top = min(max(round(fy * height - box_h / 2), 0), height - box_h)
    return Box(top, left, box_h, box_w)


def zoomed(image: np.ndarray, box: Box, zoom: int) -> np.ndarray:
    """The window magnified `zoom` times by pixel repetition, so each output pixel stays visible as a block."""
    return np.repeat(np.repeat(box.cut(image), zoom, axis=0), zoom, axis=1)


def centre_from_click(xy: tuple[int, int], shape: tuple[int, ...]) -> tuple[float, float]:
    """A click at pixel (x, y) of an image of `shape` -> the centre as (x, y) fractions."""
    height, width = shape[:2]
    return (xy[0] + 0.5) / width, (xy[1] + 0.5) / height


def snap(value: float | None, low: float, high: float, step: float) -> float:
    """A number typed into a slider of this range and step, as the views use it: clamped to [low, high] and rounded
    to the nearest step from `low`; an empty box reads as `low` (the page shows it so)."""
    if value is None:
        return low
    steps = math.floor((min(max(float(value), low), high) - low) / step + 0.5)
    return min(round(low + steps * step, 10), high)
