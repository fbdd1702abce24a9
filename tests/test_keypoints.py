"""Keypoint geometry: the object's 9 keypoints projected with Unity's convention and the pose solved back."""

from __future__ import annotations

import numpy as np
import pytest
import roma
import torch

from cubepose.config import validate_config
from cubepose.data import TrainDataset
from cubepose.geometry.object import Box
from cubepose.models.codecs.keypoints import (
    _jacobian,
    _project,
    _refine,
    _weak_perspective,
    object_keypoints,
    project_keypoints,
    solve_pnp,
)
from cubepose.synth.generate import GenerationOptions, camera_option, generate_dataset, scene_options

BOX = Box((0.3, 0.2, 0.1))


def random_poses(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    quaternions = rng.normal(size=(count, 4))
    quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
    quaternions[quaternions[:, 3] < 0] *= -1
    translations = np.stack(
        [rng.uniform(-0.1, 0.1, count), rng.uniform(-0.1, 0.1, count), rng.uniform(0.6, 1.2, count)]
    )
    return translations.T, quaternions


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(2 * np.arccos(np.clip(np.abs((a * b).sum(axis=-1)), 0, 1)))


def solved(pixels: np.ndarray, camera: np.ndarray, box: Box = BOX) -> tuple[np.ndarray, ...]:
    result = solve_pnp(torch.tensor(pixels), torch.tensor(object_keypoints(box)), torch.tensor(camera))
    return tuple(value.numpy() for value in result)


def test_exact_keypoints_give_back_the_pose_for_an_off_centre_camera():
    translations, quaternions = random_poses(64)
    cameras = np.tile([600.0, 610.0, 330.0, 235.0], (64, 1))
    translation, quaternion, error = solved(project_keypoints(BOX, translations, quaternions, cameras), cameras)
    np.testing.assert_allclose(translation, translations, atol=1e-9)
    assert angle_deg(quaternion, quaternions).max() < 1e-5 and (quaternion[:, 3] >= 0).all()
    assert error.max() < 1e-9


def test_noisy_keypoints_are_refined_to_the_noise_level():
    translations, quaternions = random_poses(64, seed=1)
    cameras = np.tile([600.0, 610.0, 330.0, 235.0], (64, 1))
    pixels = project_keypoints(BOX, translations, quaternions, cameras)
    noisy = pixels + np.random.default_rng(2).normal(scale=0.5, size=pixels.shape)
    translation, quaternion, error = solved(noisy, cameras)
    assert np.abs(translation - translations).max() < 0.01  # the linear solve alone is off by up to 5 cm
    assert angle_deg(quaternion, quaternions).max() < 1.5
    assert 0.4 < error.mean() < 0.6  # the least-squares optimum sits at the noise level


def test_the_same_pose_is_found_whatever_the_camera():
    translations, quaternions = random_poses(8, seed=3)
    for camera in ([300.0, 300.0, 160.0, 120.0], [900.0, 700.0, 500.0, 300.0]):
        cameras = np.tile(camera, (8, 1))
        translation, quaternion, _ = solved(project_keypoints(BOX, translations, quaternions, cameras), cameras)
        np.testing.assert_allclose(translation, translations, atol=1e-9)
        assert angle_deg(quaternion, quaternions).max() < 1e-5


@pytest.mark.parametrize("layout", ["legacy", "solo"])
def test_a_generated_datasets_labels_and_cameras_round_trip_through_the_solve(tmp_path, layout, tiny_config):
    scene = scene_options(camera=camera_option([96, 64, 70, 80, 40, 36]), dimensions=(0.05, 0.05, 0.05))
    generate_dataset(tmp_path / "data", GenerationOptions(count=6, seed=4, format=layout, scene=scene))
    tiny_config["data"]["train"]["root"] = str(tmp_path / "data")
    tiny_config["object"] = {"dimensions": [0.05, 0.05, 0.05]}
    labels = TrainDataset(validate_config(tiny_config)).labels  # cameras of the 32 px network input
    box = Box((0.05, 0.05, 0.05))
    pixels = project_keypoints(box, labels["translation"], labels["quaternion"], labels["camera"])
    translation, quaternion, _ = solved(pixels, labels["camera"].astype(np.float64), box)
    np.testing.assert_allclose(translation, labels["translation"], atol=1e-6)
    assert angle_deg(quaternion, labels["quaternion"]).max() < 0.05  # float32 labels: arccos near 1 magnifies


def test_a_solve_behind_the_camera_restarts_in_front_of_it_from_a_weak_perspective_pose():
    """The scaled orthographic start is close for a distant object, and the solve from it converges to the pose."""
    box = Box((0.1, 0.1, 0.1))
    translation = np.array([[0.03, -0.02, 0.5]])
    quaternion = np.array([[0.3, -0.2, 0.1, 0.927]]) / np.linalg.norm([0.3, -0.2, 0.1, 0.927])
    camera = np.array([[110.0, 100.0, 60.0, 66.0]])
    pixels = torch.from_numpy(project_keypoints(box, translation, quaternion, camera))
    points = torch.tensor(object_keypoints(box))
    rotation, start = _weak_perspective(pixels, points, torch.tensor(camera), torch.ones(1, 9, dtype=torch.float64))
    assert abs(float(start[0, 2]) - 0.5) < 0.05 and np.allclose(start[0, :2], translation[0, :2], atol=0.01)
    true_rotation = roma.unitquat_to_rotmat(torch.tensor(quaternion[0]))
    assert np.degrees(float(roma.rotmat_geodesic_distance(rotation[0], true_rotation))) < 15
    weights = torch.ones(1, 9, dtype=torch.float64)
    refined, moved = _refine(pixels, points, torch.tensor(camera), weights, rotation, start)
    np.testing.assert_allclose(moved.numpy(), translation, atol=1e-6)
    assert float(roma.rotmat_geodesic_distance(refined[0], true_rotation)) < 1e-6


def test_the_closed_form_jacobian_of_the_refinement_equals_autograds():
    generator = torch.Generator().manual_seed(0)
    rotations = roma.random_rotmat(3, dtype=torch.float64, generator=generator)
    translations = torch.tensor([[0.1, 0.0, 1.0], [0.0, 0.1, 0.8], [-0.1, 0.05, 1.2]], dtype=torch.float64)
    cameras = torch.tensor([[110.0, 120.0, 64.0, 60.0]], dtype=torch.float64).expand(3, 4)
    points = torch.tensor(object_keypoints(BOX))

    def pixels(steps: torch.Tensor) -> torch.Tensor:
        turned = rotations @ roma.rotvec_to_rotmat(steps[:, :3])
        return _project(points, turned, translations + steps[:, 3:], cameras)

    full = torch.autograd.functional.jacobian(pixels, torch.zeros(3, 6, dtype=torch.float64))  # (B, K, 2, B, 6)
    expected = torch.stack([full[i, :, :, i] for i in range(3)])
    torch.testing.assert_close(_jacobian(points, rotations, translations, cameras), expected, atol=1e-10, rtol=0)
