"""The two-stage crop model: windows against the real renderer's cube mask, crops, the viewing-ray
rotation, PoseNet's two stages, the window loss and the config checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cubepose.config import validate_config
from cubepose.errors import ConfigError
from cubepose.geometry.projection import intrinsics_from_fov
from cubepose.geometry.rays import ray_rotations
from cubepose.losses import Criterion
from cubepose.models import PoseNet
from cubepose.models.crop import crop_windows, cube_windows, to_camera_frame
from cubepose.synth.gl_renderer import GLRenderer
from cubepose.synth.scene import PRESETS, sample_scene

SIZE = 128
CROP_LOSSES = {
    "translation": {"type": "mse", "weight": 100.0},
    "orientation": {"type": "sign_invariant", "weight": 1.0},
    "window": {"type": "mse", "weight": 1.0},
}


def crop_config(**crop) -> dict:
    network = {"backbone": "small_cnn", "head": "pooled", "image_size": 64, "rotation": "6d"}
    network["crop"] = {"active": True, "locate_size": 32, "size": 32, **crop}
    return validate_config({"network": network, "losses": dict(CROP_LOSSES)})


@pytest.fixture(scope="module")
def rendered():
    """Four default-preset scenes at 128 px: poses, cameras and the renderer's cube masks."""
    renderer = GLRenderer(SIZE, SIZE)
    scenes = [sample_scene(np.random.default_rng([9, index, 0]), PRESETS["default"]) for index in range(4)]
    masks = np.stack([renderer.render(scene, mask=True)[1] for scene in scenes])
    renderer.release()
    translation = torch.tensor(np.stack([s.cube.translation for s in scenes]), dtype=torch.float32)
    camera = intrinsics_from_fov(np.array([s.vertical_fov_deg for s in scenes]), SIZE, SIZE)
    return translation, torch.tensor(camera, dtype=torch.float32), torch.tensor(masks, dtype=torch.float32)


def test_true_windows_frame_the_rendered_cube(rendered):
    translation, camera, masks = rendered
    # f R / z underestimates the bounding sphere's image off the optical axis, hence margins above 1
    windows = cube_windows(translation, camera, SIZE, margin=1.2)
    centre = (windows[:, :2] + 1) * SIZE / 2  # pixels
    half_side = windows[:, 2].exp() * SIZE / 2
    for mask, (u, v), half in zip(masks.numpy(), centre.numpy(), half_side.numpy(), strict=True):
        rows, cols = np.nonzero(mask)
        # the whole cube lies inside the window, and the window is not much larger than the cube
        assert u - half <= cols.min() and cols.max() + 1 <= u + half
        assert v - half <= rows.min() and rows.max() + 1 <= v + half
        assert 2 * half < 2.0 * max(cols.max() + 1 - cols.min(), rows.max() + 1 - rows.min())


def test_crops_at_true_windows_centre_the_whole_cube_at_one_scale(rendered):
    translation, camera, masks = rendered
    crop = 64
    windows = cube_windows(translation, camera, SIZE, margin=1.3)
    crops = crop_windows(masks[:, None], windows, crop)[:, 0].numpy()
    scale = crop / (windows[:, 2].exp() * SIZE).numpy()  # crop pixels per image pixel
    for cropped, mask, factor in zip(crops, masks.numpy(), scale, strict=True):
        np.testing.assert_allclose(cropped.sum(), mask.sum() * factor**2, rtol=0.08)  # nothing cut off
        rows, cols = np.nonzero(cropped > 0.5)
        assert abs(cols.mean() - crop / 2) < 3 and abs(rows.mean() - crop / 2) < 3
    shares = (crops > 0.5).mean(axis=(1, 2))  # the cube covers about the same share of every crop
    assert shares.max() / shares.min() < 1.3


def test_crop_of_the_whole_image_is_the_image_resampled():
    image = torch.arange(16.0).reshape(1, 1, 4, 4)
    whole = torch.tensor([[0.0, 0.0, 0.0]])  # centre, s = 1
    torch.testing.assert_close(crop_windows(image, whole, 4), image)
    # half the side around (0.5, 0): samples at the centres of pixels (row 1-2, column 2-3)
    centre_right = torch.tensor([[0.5, 0.0, float(np.log(0.5))]])
    torch.testing.assert_close(crop_windows(image, centre_right, 2), torch.tensor([[[[6.0, 7.0], [10.0, 11.0]]]]))


def test_ray_rotation_turns_the_optical_axis_onto_the_ray():
    import roma

    translation = torch.tensor([[0.0, 0.0, 2.0], [0.3, -0.2, 0.5], [-1.0, 0.5, 0.1]])
    q = ray_rotations(translation)
    torch.testing.assert_close(q[0], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    turned = roma.quat_action(q, torch.tensor([0.0, 0.0, 1.0]).expand(3, 3))
    torch.testing.assert_close(turned, torch.nn.functional.normalize(translation, dim=-1))
    # on the optical axis the orientation along the ray is already the camera-frame orientation
    along = torch.tensor([[0.1, 0.2, 0.3, 0.9]]).expand(3, 4)
    torch.testing.assert_close(to_camera_frame(q, along)[0], along[0])


def test_two_stage_net_locates_on_a_downscaled_view_and_orients_from_the_crop():
    model = PoseNet(crop_config())
    images = torch.randn(5, 3, 64, 64)
    out = model(images)
    assert out["translation"].shape == (5, 3) and out["window"].shape == (5, 3)
    torch.testing.assert_close(out["quaternion"].norm(dim=1), torch.ones(5))
    assert torch.all(out["quaternion"][:, 3] >= 0)
    # the orientation's loss trains stage 2 only: the window is followed, not steered
    out["quaternion"].sum().backward()
    assert all(p.grad is None for p in model.head.parameters())
    assert all(p.grad is not None for p in model.crop_backbone.parameters())


def test_window_loss_compares_with_the_window_of_the_true_pose():
    config = crop_config(margin=1.5)
    config["network"]["image_size"] = SIZE
    translation = torch.tensor([[0.05, -0.02, 0.4]])
    camera = torch.tensor([[110.0, 110.0, 64.0, 64.0]])
    targets = {"translation": translation, "quaternion": torch.tensor([[0.0, 0.0, 0.0, 1.0]]), "camera": camera}
    true_window = cube_windows(translation, camera, SIZE, 1.5)
    predictions = {"translation": translation, "quaternion": targets["quaternion"], "window": true_window + 0.1}
    values = Criterion.from_config(config)(predictions, targets)
    torch.testing.assert_close(values["window"], torch.tensor([0.01]))
    torch.testing.assert_close(values["total"], values["window"])
    del targets["camera"]
    with pytest.raises(ConfigError, match="losses/window needs each example's camera"):
        Criterion.from_config(config)(predictions, targets)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["losses"].pop("window"), "network/crop/active needs losses/window"),
        (lambda c: c["network"]["crop"].update(active=False), "losses/window: only the two-stage model"),
        (lambda c: c["network"]["crop"].update(locate_size=128), "network/crop/locate_size: 128 exceeds"),
        (lambda c: c["network"]["crop"].update(backbone="vgg"), "network/crop/backbone: unknown backbone 'vgg'"),
    ],
)
def test_crop_settings_that_cannot_work_are_config_errors(change, message):
    config = {
        "network": {"backbone": "small_cnn", "image_size": 64, "crop": {"active": True}},
        "losses": dict(CROP_LOSSES),
    }
    change(config)
    with pytest.raises(ConfigError, match=message):
        validate_config(config)
