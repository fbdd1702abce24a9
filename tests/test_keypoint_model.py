"""The keypoint network (network/type: keypoints): its targets, decoding, config rules, and the whole path
through edflow, evaluation, prediction with a camera and export."""

from __future__ import annotations

import csv
import json
import subprocess

import numpy as np
import pytest
import roma
import torch
from edflow.data.believers.meta import MetaDataset
from test_edflow_e2e import CONFIGS, _eval_dirs, _ok, edflow

from conftest import BIN, REPO
from cubepose.config import validate_config
from cubepose.errors import ConfigError
from cubepose.geometry.symmetries import cube_rotations, symmetric_equivalents
from cubepose.inference.export import export_model
from cubepose.inference.predictor import PosePredictor
from cubepose.losses import Criterion
from cubepose.models import KeypointNet, pose_network
from cubepose.models.codecs.keypoints import solve_pnp

KEYPOINT_LOSS = {"keypoints": {"type": "heatmap", "weight": 1.0}}
KEYPOINT_CONFIGS = [*CONFIGS, str(REPO / "configs" / "keypoints_cpu.yaml")]


def keypoint_config(**network) -> dict:
    return validate_config({"network": {"type": "keypoints", "image_size": 64, **network}, "losses": KEYPOINT_LOSS})


def random_poses(count: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Poses of a 0.1 m cube 0.3-0.55 m in front of an off-centre 64 px camera with fx != fy."""
    generator = torch.Generator().manual_seed(seed)
    uniform = torch.rand(count, 3, generator=generator)
    translation = torch.stack([uniform[:, 0] * 0.16 - 0.08, uniform[:, 1] * 0.12 - 0.06, 0.3 + uniform[:, 2] * 0.25], 1)
    quaternion = torch.nn.functional.normalize(torch.randn(count, 4, generator=generator), dim=1)
    quaternion = torch.where(quaternion[:, 3:] < 0, -quaternion, quaternion)
    camera = torch.tensor([[52.0, 60.0, 30.0, 34.0]]).expand(count, 4)
    return {"translation": translation, "quaternion": quaternion, "camera": camera}


def pack(target) -> torch.Tensor:
    """A keypoint target (heatmaps, offsets, mask [, names]) as one (B, 4K [+ G], H, W) tensor, for comparisons."""
    names = [] if target.names is None else [target.names]
    return torch.cat([target.heatmaps, target.offsets.flatten(1, 2), target.mask, *names], dim=1)


def as_outputs(packed: torch.Tensor) -> dict[str, torch.Tensor]:
    """The loss target (heatmaps, offsets, mask) read as if a network had predicted it perfectly."""
    k = packed.shape[1] // 4
    return {"heatmaps": packed[:, :k], "offsets": packed[:, k : 3 * k].unflatten(1, (k, 2))}


@pytest.mark.parametrize("stride", [2, 4, 8])
def test_a_perfect_prediction_has_zero_loss_and_solves_to_the_true_pose(stride):
    config = keypoint_config(keypoints={"stride": stride})
    network, criterion = pose_network(config).eval(), Criterion.from_config(config)
    targets = random_poses(32)
    packed = pack(criterion.terms[0].target(targets))
    assert packed.shape == (32, 36, 64 // stride, 64 // stride)
    outputs = as_outputs(packed)
    assert torch.count_nonzero(criterion(outputs, targets)["total"]) == 0
    poses = network.poses(outputs, targets["camera"])
    translation_error = (poses["translation"] - targets["translation"]).norm(dim=1)
    assert translation_error.max() < 1e-5  # metres: the targets decode to the exact keypoints
    assert (poses["quaternion"] * targets["quaternion"]).sum(1).abs().min() > 1 - 1e-6
    assert (poses["quaternion"][:, 3] >= 0).all()
    assert poses["reprojection_error"].max() < 1e-3 and poses["confidence"].min() > 0.7


def test_network_outputs_heatmaps_and_offsets_at_the_stride_for_any_batch():
    network = pose_network(keypoint_config())
    outputs = network(torch.zeros(3, 3, 64, 64))
    assert outputs["heatmaps"].shape == (3, 9, 16, 16) and outputs["offsets"].shape == (3, 9, 2, 16, 16)
    assert isinstance(network, KeypointNet) and network.takes_camera


@pytest.mark.parametrize(
    "config",
    [
        validate_config({"network": {"backbone": "small_cnn", "image_size": 32}}),
        keypoint_config(),
        keypoint_config(keypoints={"assign_by_shape": True}),
        validate_config(
            {
                "network": {"type": "keypoints", "image_size": 64},
                "losses": {**KEYPOINT_LOSS, "displacements": {"type": "displacement"}},
                "data": {"max_instances": 3},
            }
        ),
    ],
    ids=["regression", "keypoints", "assign_by_shape", "several"],
)
def test_every_network_declares_the_shapes_of_its_poses(config):
    """The predictor fills the rows of unreadable images from ``pose_shapes`` without running the network."""
    network = pose_network(config).eval()
    size = config["network"]["image_size"]
    poses = network.poses(network(torch.zeros(2, 3, size, size)), torch.tensor([[50.0, 50.0, size / 2, size / 2]] * 2))
    assert {key: tuple(value.shape[1:]) for key, value in poses.items()} == network.pose_shapes()


def test_a_wrong_keypoint_decoded_weighs_less_in_the_solve():
    """A corner 6 px off with score 0.05 barely moves the pose; with full weight it does."""
    network = pose_network(keypoint_config()).eval()
    targets = random_poses(8, seed=3)
    outputs = as_outputs(pack(Criterion.from_config(keypoint_config()).terms[0].target(targets)))
    pixels, scores = network.keypoints(outputs)
    pixels[:, 5] += 6.0
    trusted = solve_pnp(pixels, network.object_points, targets["camera"], torch.ones_like(scores))[0]
    scores[:, 5] = 0.05
    weighed = solve_pnp(pixels, network.object_points, targets["camera"], scores)[0]
    error = {
        name: (t - targets["translation"]).norm(dim=1).mean() for name, t in (("trusted", trusted), ("w", weighed))
    }
    assert error["w"] < error["trusted"] / 5


def test_symmetric_object_gets_the_same_targets_for_every_equivalent_orientation():
    config = keypoint_config()
    config["object"]["symmetries"] = "cube"
    term = Criterion.from_config(config).terms[0]
    targets = random_poses(4, seed=1)
    equivalents = torch.as_tensor(symmetric_equivalents(targets["quaternion"].numpy(), cube_rotations()))  # (4, 24, 4)
    reference = pack(term.target(targets))
    for k in range(24):
        turned = pack(term.target({**targets, "quaternion": equivalents[:, k].float()}))
        torch.testing.assert_close(turned, reference, atol=1e-4, rtol=0)
    plain = Criterion.from_config(keypoint_config()).terms[0]
    turned = pack(plain.target({**targets, "quaternion": equivalents[:, 5].float()}))
    assert not torch.allclose(turned, pack(plain.target(targets)), atol=1e-2)


def test_corners_assigned_by_shape_ask_one_target_per_look_and_the_head_names_the_orientation():
    """assign_by_shape: the 24 orientations that put a cube's corners on the same pixels get the same heatmaps,
    told apart only by the symmetry channels; a perfect head then recovers the true (asymmetric) orientation."""
    config = keypoint_config(keypoints={"assign_by_shape": True})
    network, criterion = pose_network(config).eval(), Criterion.from_config(config)
    targets = random_poses(24, seed=4)
    packed = pack(criterion.terms[0].target(targets))
    assert packed.shape == (24, 36 + 24, 16, 16)
    right = packed[:, 36:, 0, 0]
    assert torch.equal(right.sum(1), torch.ones(24))  # a die's faces differ: one right index each
    equivalents = torch.as_tensor(symmetric_equivalents(targets["quaternion"].numpy(), cube_rotations())).float()
    turned = pack(criterion.terms[0].target({**targets, "quaternion": equivalents[:, 7]}))
    torch.testing.assert_close(turned[:, :36], packed[:, :36], atol=1e-4, rtol=0)
    assert not torch.equal(turned[:, 36:], packed[:, 36:])
    outputs = {**as_outputs(packed[:, :36]), "symmetry_logits": 30 * packed[:, 36:]}
    assert criterion(outputs, targets)["total"].max() < 1e-6
    poses = network.poses(outputs, targets["camera"])
    assert (poses["quaternion"] * targets["quaternion"]).sum(1).abs().min() > 1 - 1e-6
    wrong = network.poses({**outputs, "symmetry_logits": outputs["symmetry_logits"].roll(1, dims=1)}, targets["camera"])
    assert (wrong["quaternion"] * targets["quaternion"]).sum(1).abs().max() < 0.99
    symmetric = keypoint_config(keypoints={"assign_by_shape": True})
    symmetric["object"]["symmetries"] = "cube"  # every index is right: the head has nothing to learn
    anything = {**outputs, "symmetry_logits": torch.randn_like(outputs["symmetry_logits"])}
    assert Criterion.from_config(symmetric)(anything, targets)["total"].max() < 1e-6


@pytest.mark.parametrize(
    ("network", "losses", "message"),
    [
        ({"type": "keypoints"}, {"translation": {"type": "mse"}}, "is trained with losses/keypoints"),
        ({"type": "regression"}, KEYPOINT_LOSS, "set network/type: keypoints"),
        ({"type": "keypoints", "image_size": 72}, KEYPOINT_LOSS, "must be a multiple of 16"),
        ({"type": "keypoints", "keypoints": {"stride": 3}}, KEYPOINT_LOSS, "network/keypoints/stride"),
        ({"type": "heatmaps"}, KEYPOINT_LOSS, "network/type: unknown network type 'heatmaps'"),
    ],
)
def test_config_rules_of_the_network_type_name_the_key(network, losses, message):
    with pytest.raises(ConfigError, match=message):
        pose_network(validate_config({"network": {"image_size": 64, **network}, "losses": losses}))


@pytest.fixture(scope="module")
def keypoint_run(tiny_data, tmp_path_factory):
    """configs/keypoints_cpu.yaml trained 4 steps through the real edflow on the tiny data (32 px)."""
    work = tmp_path_factory.mktemp("keypoints")
    _ok(edflow(["-n", "kp", "-b", *KEYPOINT_CONFIGS, "-t", "--num_steps", "4"], work, tiny_data))
    (run,) = (work / "logs").glob("*_kp")
    return run


def test_keypoint_model_trains_and_evaluates_through_edflow_with_a_confidence(keypoint_run):
    state = torch.load(keypoint_run / "train" / "checkpoints" / "model-4.ckpt", weights_only=True)
    assert state["config"]["network"]["type"] == "keypoints" and "heatmap_head.weight" in state["model"]
    outputs = _eval_dirs(keypoint_run)[-1]
    labels = MetaDataset(str(outputs)).labels
    assert labels["confidence"].shape == (16,) and np.all((labels["confidence"] >= 0) & (labels["confidence"] <= 1))
    assert np.isfinite(labels["reprojection_error"]).all() and np.isfinite(labels["translation_pred"]).all()
    assert "loss_keypoints" in labels
    with open(outputs.parent / "errors.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 16 and "confidence" in rows[0]
    assert "confidence_mean" in (outputs.parent / "report.html").read_text()
    assert "mean_confidence" in (keypoint_run / "train" / "log.txt").read_text()


def test_keypoint_predictions_are_solved_with_the_camera_given(keypoint_run, tiny_data):
    """Without a camera the training camera is used (the CLI reproduces evaluation's poses); a given camera,
    in pixels of the 48 px images, is scaled to the 32 px input and the pose solved with it; predict's JSON
    carries the confidence."""
    checkpoint = keypoint_run / "train" / "checkpoints" / "model-4.ckpt"
    outputs = _eval_dirs(keypoint_run)[-1]
    with open(outputs.parent / "errors.csv") as handle:
        images = [row["image_path"] for row in csv.DictReader(handle)][:4]
    predict = [str(BIN / "cubepose"), "predict", "--checkpoint", str(checkpoint), *images]
    lines = _ok(subprocess.run(predict, capture_output=True, text=True)).stdout.splitlines()
    plain = [json.loads(line)["poses"][0] for line in lines]
    labels = MetaDataset(str(outputs)).labels
    np.testing.assert_allclose([r["translation"] for r in plain], labels["translation_pred"][:4], atol=1e-4)
    np.testing.assert_allclose([r["confidence"] for r in plain], labels["confidence"][:4], atol=1e-5)
    predictor = PosePredictor.load(checkpoint)
    other = [80.0, 70.0, 26.0, 22.0]  # fx, fy, cx, cy of the 48 px images
    poses = predictor.predict(images, camera=other)
    scaled = torch.tensor(other) * 32 / 48
    keypoints, scores = (torch.from_numpy(poses[key]) for key in ("keypoints", "scores"))
    translation = solve_pnp(keypoints, predictor.model.object_points, scaled.expand(4, 4), scores.clamp(0, 1))[0]
    np.testing.assert_allclose(poses["translation"], translation.numpy(), atol=1e-5)
    assert not np.allclose(poses["translation"], labels["translation_pred"][:4], atol=1e-3)  # not the training camera
    intrinsics = subprocess.run([*predict, "--intrinsics", *map(str, other)], capture_output=True, text=True)
    record = json.loads(_ok(intrinsics).stdout.splitlines()[0])["poses"][0]
    np.testing.assert_allclose(record["translation"], poses["translation"][0], atol=1e-5)
    assert 0 <= record["confidence"] <= 1 and record["reprojection_error"] >= 0


def test_keypoint_export_returns_the_keypoints_the_predictor_solves_with(keypoint_run, tmp_path):
    predictor = PosePredictor.load(keypoint_run / "train" / "checkpoints" / "model-4.ckpt")
    out = export_model(predictor, tmp_path / "kp.pt", "torchscript")
    contract = json.loads((tmp_path / "kp.pt.json").read_text())
    assert list(contract["outputs"]) == ["keypoints", "scores"] and len(contract["object_points"]) == 9
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    inputs = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        keypoints, scores = torch.jit.load(str(out))(inputs)
    expected = predictor.predict_batch(images)
    np.testing.assert_allclose(keypoints.numpy(), expected["keypoints"], atol=1e-4)
    camera = torch.as_tensor(predictor.training_camera["intrinsics"], dtype=torch.float32).expand(3, 4)
    translation = solve_pnp(keypoints, torch.tensor(contract["object_points"]), camera, scores.clamp(0, 1))[0]
    np.testing.assert_allclose(translation.float().numpy(), expected["translation"], atol=1e-4)


def test_an_export_of_corners_assigned_by_shape_names_the_symmetry_its_note_undoes(tmp_path):
    """assign_by_shape: the export adds the symmetry index; the note's recipe (PnP, then q * conj(g_k)) gives the
    predictor's pose."""
    config = keypoint_config(keypoints={"assign_by_shape": True})
    predictor = PosePredictor(pose_network(config).eval(), config, "cpu")
    out = export_model(predictor, tmp_path / "shape.pt", "torchscript")
    contract = json.loads((tmp_path / "shape.pt.json").read_text())
    assert list(contract["outputs"]) == ["keypoints", "scores", "symmetry"] and len(contract["symmetries"]) == 24
    images = np.random.default_rng(1).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        keypoints, scores, symmetry = torch.jit.load(str(out))(torch.from_numpy(images).permute(0, 3, 1, 2) / 127.5 - 1)
    camera = torch.tensor([[60.0, 60.0, 32.0, 32.0]]).expand(4, 4)
    expected = predictor.predict_batch(images, camera.numpy())
    solved = solve_pnp(keypoints, torch.tensor(contract["object_points"]), camera, scores.clamp(0, 1))[1]
    turn = torch.tensor(contract["symmetries"])[symmetry] * torch.tensor([-1.0, -1.0, -1.0, 1.0])
    quaternion = roma.quat_product(solved.float(), turn)
    np.testing.assert_allclose(np.abs((quaternion.numpy() * expected["quaternion"]).sum(1)), 1, atol=1e-4)
