"""The training sampler: crops, augmentation, skipped small images, LR made by MATLAB bicubic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srgan_core.data import TrainImages, benchmark_images, make_pair
from srgan_core.imresize import imresize


def test_small_images_are_skipped_and_counted(tmp_path: Path) -> None:
    for name, size in [("a", 40), ("b", 100), ("c", 31)]:
        Image.fromarray(np.full((size, size + 5, 3), 7, np.uint8)).save(tmp_path / f"{name}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    images = TrainImages.load([tmp_path], crop=32)
    assert len(images) == 2 and images.skipped == 1


def test_crops_stay_inside_each_image_and_cover_it() -> None:
    """Images of different sizes and orientations share one padded tensor: no crop may reach the padding."""
    shapes = [(40, 70), (70, 40), (33, 33), (50, 90)]  # (h, w), a portrait one among them
    images = TrainImages.from_tensors([torch.full((3, h, w), 10 + i, dtype=torch.uint8) for i, (h, w) in enumerate(shapes)])
    batch = images.batch(4000, 32, torch.Generator().manual_seed(0))
    assert batch.shape == (4000, 3, 32, 32) and batch.dtype == torch.uint8
    values = batch.flatten(1)
    assert (values == values[:, :1]).all() and set(values[:, 0].tolist()) == {10, 11, 12, 13}  # never the zero padding


def test_crop_positions_and_the_eight_dihedral_transforms_are_all_drawn() -> None:
    h, w = 6, 8
    picture = torch.arange(h * w, dtype=torch.uint8).view(1, h, w).expand(3, h, w).clone()
    batch = TrainImages.from_tensors([picture]).batch(3000, 6, torch.Generator().manual_seed(0))
    seen = {tuple(crop[0].flatten().tolist()) for crop in batch}
    expected = set()
    for left in range(w - 6 + 1):  # every 6x6 window of the 6x8 picture, under each of the 8 transforms
        window = picture[0, :, left : left + 6]
        for k in range(4):
            for flip in (False, True):
                turned = torch.rot90(window.flip(-1) if flip else window, k)
                expected.add(tuple(turned.flatten().tolist()))
    assert seen == expected and len(expected) == 3 * 8


def test_a_batch_takes_distinct_images_while_there_are_enough() -> None:
    """The paper's 16 crops per mini-batch are "of distinct training images"; with fewer images, some repeat."""
    images = TrainImages.from_tensors([torch.full((3, 20, 20), i, dtype=torch.uint8) for i in range(20)])
    for seed in range(50):
        picked = images.batch(16, 8, torch.Generator().manual_seed(seed))[:, 0, 0, 0].tolist()
        assert len(set(picked)) == 16
    assert len(set(images.batch(30, 8, torch.Generator().manual_seed(0))[:, 0, 0, 0].tolist())) <= 20


def test_batches_are_reproducible_crops(tmp_path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 60, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    images = TrainImages.load([tmp_path], crop=16)
    a = images.batch(4, 16, torch.Generator().manual_seed(1))
    b = images.batch(4, 16, torch.Generator().manual_seed(1))
    assert a.shape == (4, 3, 16, 16) and a.dtype == torch.uint8 and torch.equal(a, b)


def test_lr_is_quantised_matlab_bicubic() -> None:
    hr = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    lr, target = make_pair(hr)
    assert lr.shape == (2, 3, 8, 8) and target.min() >= -1 and target.max() <= 1
    torch.testing.assert_close(lr * 255, (lr * 255).round())
    expected = imresize(hr.double() / 255, 0.25).clamp(0, 1)
    assert (lr.double() - expected).abs().max() <= 0.5 / 255 + 1e-6


def test_unknown_benchmark_and_missing_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown benchmark"):
        benchmark_images("Urban100", tmp_path)
    with pytest.raises(FileNotFoundError, match="no Set5 images"):
        benchmark_images("Set5", tmp_path)
    with pytest.raises(FileNotFoundError, match="SRGAN_DATA"):
        benchmark_images("Set5", tmp_path / "missing")


def test_the_data_folder_is_found_in_the_clone_then_beside_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from srgan_core import download, paths

    clone, shared = tmp_path / "clone" / "data", tmp_path / "shared" / "data"
    monkeypatch.setattr(paths, "CLONE_DATA", clone)
    monkeypatch.setattr(paths, "SHARED_DATA", shared)
    monkeypatch.delenv("SRGAN_DATA", raising=False)
    assert paths.default_data_root() is None
    shared.mkdir(parents=True)
    assert paths.default_data_root() == shared
    (clone / "study").mkdir(parents=True)  # the study's database alone is not data
    assert paths.default_data_root() == shared
    (clone / "benchmarks").mkdir()
    assert paths.default_data_root() == clone
    monkeypatch.setenv("SRGAN_DATA", str(tmp_path / "elsewhere"))
    assert paths.default_data_root() == tmp_path / "elsewhere" == download.default_target()
    monkeypatch.delenv("SRGAN_DATA")
    assert download.default_target() == clone  # the download fills the folder the project reads


def test_without_data_the_error_names_the_download_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"python -m srgan_core.data download"):
        benchmark_images("Set5", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"python -m srgan_core.data download --only benchmarks --to"):
        benchmark_images("Set5", tmp_path)
