"""Shared fixtures: the real data folder (tests needing it skip without it) and small synthetic images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srgan_core import method_specs
from srgan_core.paths import REPO_ROOT, default_data_root

RECORD_ENV = "SRGAN_RECORD_RESULTS"


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = default_data_root()
    if root is None or not (root / "benchmarks").is_dir():
        pytest.skip("needs the benchmark data (../shared/data or SRGAN_DATA)")
    return root


@pytest.fixture(scope="session")
def vgg_weights(data_root: Path) -> Path:
    path = data_root / "vgg19" / "vgg19_features_imagenet.safetensors"
    if not path.is_file():
        pytest.skip("needs the VGG19 weights in the data folder")
    return path


@pytest.fixture
def photo() -> np.ndarray:
    """A 64x48 uint8 RGB crop of a scikit-image sample photo."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:148, 180:244])


@pytest.fixture(scope="session")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where tests write what they measure or draw: the repository's results/ when SRGAN_RECORD_RESULTS=1 (the
    commands named in results/ set it), a temporary folder otherwise, so a plain test run leaves the tree as it was."""
    if os.environ.get(RECORD_ENV) == "1":
        return REPO_ROOT / "results"
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="session")
def tiny_set5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder whose Set5 is two 48x48 images of flat 8x8 blocks: enough for a scoring command to run."""
    root = tmp_path_factory.mktemp("tiny-data")
    (root / "benchmarks" / "Set5").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        blocks = np.kron(rng.integers(0, 256, (6, 6, 3)), np.ones((8, 8, 1))).astype(np.uint8)
        Image.fromarray(blocks).save(root / "benchmarks" / "Set5" / f"img{i}.png")
    return root


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder that the learned methods (and the knob) read their weights and model cards from."""
    monkeypatch.setattr(method_specs, "MODELS_DIR", tmp_path)
    return tmp_path
