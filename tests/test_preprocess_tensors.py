"""Model input tensors and tiny_gate patches: shapes, dtypes, normalization, errors."""

from __future__ import annotations

import numpy as np
import pytest

from dfmesh.preprocess.patches import image_patches, patch_grid, tiny_patches, tiny_patches_batch
from dfmesh.preprocess.tensors import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    denormalize_imagenet,
    mri_input,
    temporal_input,
    visual_input,
)
from dfmesh.runtime.errors import InvalidInput


def _crop(size: int = 256, seed: int = 0, width: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, width or size, 3), dtype=np.uint8)


def test_visual_input_shape_and_imagenet_normalization() -> None:
    flat = np.full((256, 256, 3), (124, 116, 104), dtype=np.uint8)  # ~ImageNet mean in 0-255
    out = visual_input([flat, _crop()])
    assert out.shape == (2, 3, 224, 224) and out.dtype == np.float32
    assert out.flags["C_CONTIGUOUS"]
    expected = ((np.array([124, 116, 104]) / 255.0) - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(out[0, :, 100, 100], expected, atol=1e-5)
    assert abs(out[0]).max() < 0.01


def test_channels_stay_rgb_in_order() -> None:
    red = np.zeros((256, 256, 3), dtype=np.uint8)
    red[..., 0] = 255
    out = mri_input([red])
    assert out.shape == (1, 3, 256, 256)
    np.testing.assert_allclose(out[0, 0, 0, 0], (1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0],
                               rtol=1e-6)
    np.testing.assert_allclose(out[0, 1, 0, 0], -IMAGENET_MEAN[1] / IMAGENET_STD[1], rtol=1e-6)


def test_other_sizes_are_resized() -> None:
    assert visual_input([_crop(224)]).shape == (1, 3, 224, 224)
    assert mri_input([_crop(300, width=200)]).shape == (1, 3, 256, 256)


def test_normalization_round_trips() -> None:
    crop = _crop(224)
    np.testing.assert_array_equal(denormalize_imagenet(visual_input([crop])[0]), crop)


@pytest.mark.parametrize("bad", [
    np.zeros((256, 256, 3), dtype=np.float32),
    np.zeros((256, 256), dtype=np.uint8),
    np.zeros((256, 256, 4), dtype=np.uint8),
])
def test_bad_crops_are_invalid_input(bad: np.ndarray) -> None:
    with pytest.raises(InvalidInput):
        visual_input([bad])


def test_empty_batch_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        mri_input([])


def test_tiny_patches_grid_and_content() -> None:
    crop = _crop()
    patches = tiny_patches(crop)
    assert patches.shape == (64, 3, 32, 32) and patches.dtype == np.float32
    # patch 9 is row 1, column 1 of the 8x8 grid: pixels [32:64, 32:64] of the crop
    np.testing.assert_array_equal(denormalize_imagenet(patches[9]), crop[32:64, 32:64])


def test_tiny_patches_resize_other_crop_sizes() -> None:
    assert tiny_patches(_crop(224)).shape == (64, 3, 32, 32)


def test_image_patches_on_non_square_frames() -> None:
    frame = _crop(100, width=170)
    assert len(patch_grid(100, 170, 32, 32)) == 3 * 5
    assert image_patches(frame).shape == (15, 3, 32, 32)
    with pytest.raises(InvalidInput):
        image_patches(_crop(20))


def test_tiny_patches_batch_counts() -> None:
    patches, counts = tiny_patches_batch([_crop(seed=1), _crop(seed=2)])
    assert counts == [64, 64] and patches.shape == (128, 3, 32, 32)


def test_temporal_input() -> None:
    emb = np.random.default_rng(0).normal(size=(16, 512))
    out = temporal_input(emb)
    assert out.shape == (1, 16, 512) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], emb.astype(np.float32))
    for bad in (np.zeros((0, 512)), np.zeros(512), np.full((3, 4), np.nan)):
        with pytest.raises(InvalidInput):
            temporal_input(bad)
