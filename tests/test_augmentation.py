"""Photometric augmentation of training batches: pixels change, nothing moves, evaluation is never changed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_edflow_e2e import CONFIGS, _ok, edflow

from cubepose.config import validate_config
from cubepose.errors import ConfigError
from cubepose.models import PoseNet
from cubepose.training.augmentation import PhotometricAugmentation
from cubepose.training.step import TrainingStep

OFF = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "white_balance": 0.0, "blur": 0.0, "noise": 0.0}


def _images(count: int = 8, size: int = 24, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_ranges_of_zero_change_nothing_and_probability_zero_changes_no_image():
    images = _images()
    torch.testing.assert_close(PhotometricAugmentation(probability=1.0, **OFF)(images), images)
    assert torch.equal(PhotometricAugmentation(probability=0.0)(images), images)


def test_channels_last_batches_keep_their_memory_format():
    """The GPU configs' channels-last inputs: changed images keep the layout the network was put in."""
    images = _images(4, 16).contiguous(memory_format=torch.channels_last)
    for probability in (1.0, 0.5):
        changed = PhotometricAugmentation(probability=probability)(images, torch.Generator().manual_seed(1))
        assert changed.is_contiguous(memory_format=torch.channels_last) and changed.shape == images.shape


def test_each_image_draws_its_own_change_within_the_range_and_a_seed_repeats_it():
    images = _images(1).expand(16, -1, -1, -1).contiguous()  # one picture sixteen times
    augment = PhotometricAugmentation(probability=1.0, brightness=0.5, noise=0.0, blur=0.0)
    changed = augment(images, torch.Generator().manual_seed(3))
    assert changed.shape == images.shape and changed.min() >= -1 and changed.max() <= 1
    means = changed.mean(dim=(1, 2, 3))
    assert len(torch.unique(means)) == 16  # every image its own brightness
    again = augment(images, torch.Generator().manual_seed(3))
    assert torch.equal(changed, again)


def test_the_one_colour_map_equals_gain_then_contrast_then_saturation_in_turn():
    pixels = (_images(4) + 1) / 2  # colours in [0, 1]
    augment = PhotometricAugmentation(probability=1.0, brightness=0.4, contrast=0.5, saturation=0.8, white_balance=0.2)
    matrix, offset = augment._colour(pixels.mean(dim=(2, 3)), torch.Generator().manual_seed(5))
    draws = torch.Generator().manual_seed(5)  # the same draws, in the same order
    gain = (1 + 0.4 * (2 * torch.rand(4, 1, generator=draws) - 1)) * (
        1 + 0.2 * (2 * torch.rand(4, 3, generator=draws) - 1)
    )
    contrast = 1 + 0.5 * (2 * torch.rand(4, 1, 1, generator=draws) - 1)
    saturation = 1 + 0.8 * (2 * torch.rand(4, 1, 1, generator=draws) - 1)
    gained = pixels * gain[:, :, None, None]
    mean = gained.mean(dim=(1, 2, 3), keepdim=True)
    contrasted = (gained - mean) * contrast[..., None] + mean
    grey = (contrasted * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    expected = (contrasted - grey) * saturation[..., None] + grey
    mapped = (torch.bmm(matrix, pixels.flatten(2)) + offset).view_as(pixels)
    torch.testing.assert_close(mapped, expected, atol=1e-5, rtol=1e-5)


def test_blur_and_noise_leave_every_point_where_it_was():
    """A single bright pixel stays the brightest where it was, blurred (a symmetric kernel) or noisy (noise far
    below its contrast): the camera and the labels stay exact."""
    images = torch.full((32, 3, 21, 21), -1.0)
    images[:, :, 7, 12] = 1.0
    for effect in ({"blur": 2.0}, {"noise": 6.0}):
        augment = PhotometricAugmentation(probability=1.0, **{**OFF, **effect})
        changed = augment(images, torch.Generator().manual_seed(2))
        peaks = changed.mean(dim=1).flatten(1).argmax(dim=1)
        assert torch.equal(peaks, torch.full((32,), 7 * 21 + 12)), effect
        assert not torch.equal(changed, images)  # some were blurred or noisy


def test_training_is_augmented_and_evaluation_never():
    base = {"network": {"backbone": "small_cnn", "image_size": 32}, "device": "cpu", "seed": 0}
    plain = validate_config(base)
    augmented = validate_config({**base, "augmentation": {"active": True, "probability": 1.0}})
    rng = np.random.default_rng(1)
    batch = {"image": rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)}
    batch["translation"] = np.array([[0.0, 0.0, 0.4]] * 4)
    batch["quaternion"] = np.array([[0.0, 0.0, 0.0, 1.0]] * 4)
    losses = {}
    for name, config in (("plain", plain), ("augmented", augmented)):
        torch.manual_seed(0)
        trainer = TrainingStep(PoseNet(config), config, num_steps=1)
        inputs, targets = trainer.inputs(batch["image"]), trainer.targets(batch)
        kept = {key: value.clone() for key, value in targets.items()}
        seen = trainer.evaluate(inputs, targets, 0).losses["total"]
        losses[name] = (seen, trainer.train(inputs, targets, 0).losses["total"])
        assert all(torch.equal(kept[key], targets[key]) for key in kept)  # labels and camera untouched
    np.testing.assert_array_equal(losses["plain"][0], losses["augmented"][0])  # evaluation: the same images
    assert not np.array_equal(losses["plain"][1], losses["augmented"][1])  # training: changed images


@pytest.mark.parametrize(("key", "value"), [("probability", 1.5), ("noise", -1.0), ("blur", "much")])
def test_an_impossible_range_is_refused_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=f"augmentation/{key}"):
        validate_config({"augmentation": {"active": True, key: value}})


def test_edflow_trains_with_augmentation(tiny_data, tmp_path):
    _ok(
        edflow(
            ["-n", "aug", "-b", *CONFIGS, "-t", "--num_steps", "2", "--augmentation/active", "true"],
            tmp_path,
            tiny_data,
        )
    )
    assert list(tmp_path.glob("logs/*_aug/train/checkpoints/model-2.ckpt"))
