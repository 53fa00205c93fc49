"""The example images: scikit-image's bundled sample photos, plus the benchmark sets when the data root has them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data

from srgan_core.data import BENCHMARKS, benchmark_images
from srgan_core.images import ImageError, load_image
from srgan_core.paths import damaged_data

# Bundled with scikit-image (no download); camera and coins are grayscale, logo has an alpha channel.
SKIMAGE_SAMPLES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field",
                   "camera", "coins", "logo")
SKIMAGE = "scikit-image"


def example_choices(data_root: Path | None) -> list[str]:
    """Labels such as "scikit-image / astronaut" and "Set5 / baby"."""
    choices = [f"{SKIMAGE} / {name}" for name in SKIMAGE_SAMPLES]
    for dataset in BENCHMARKS:
        try:
            choices += [f"{dataset} / {path.stem}" for path in benchmark_images(dataset, data_root)]
        except FileNotFoundError:
            continue
    return choices


def load_example(choice: str, data_root: Path | None) -> np.ndarray:
    """The image behind an `example_choices` label, as HxWx3 uint8."""
    source, _, name = choice.partition(" / ")
    if source == SKIMAGE and name in SKIMAGE_SAMPLES:
        return load_image(getattr(skimage.data, name)())
    if source in BENCHMARKS:
        for path in benchmark_images(source, data_root):
            if path.stem == name:
                try:
                    return load_image(path)
                except ImageError as exc:  # a damaged copy in the data folder: say how to replace it
                    raise ImageError(damaged_data(str(exc), path.parents[2])) from None
    raise ValueError(f"unknown example {choice!r}")
