"""The zoom-in model (network/type: zoom): a crop is another camera, perfect maps decode to the true pose, the
config rules, and the whole path through edflow, evaluation and prediction with a camera."""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import onnxruntime
import pytest
import requests
import roma
import torch
from edflow.data.believers.meta import MetaDataset
from serve_fixtures import start_serve
from test_edflow_e2e import CONFIGS, _eval_dirs, _ok, edflow
from test_keypoint_model import random_poses

from conftest import BIN, REPO
from cubepose.config import validate_config
from cubepose.errors import ConfigError
from cubepose.evaluation.evaluator import Evaluation
from cubepose.evaluation.outputs import EvalOutputs
from cubepose.geometry.object import Box
from cubepose.inference.export import export_model
from cubepose.inference.predictor import PosePredictor, as_json_record
from cubepose.losses import Criterion
from cubepose.models import pose_network
from cubepose.models.codecs.heatmaps import keypoint_targets
from cubepose.models.codecs.keypoints import keypoint_pixels, object_keypoints
from cubepose.models.codecs.targets import keypoints_target
from cubepose.models.codecs.zoom import (
    LocatorMaps,
    apparent_centre_and_radius,
    decode_locator,
    locator_target,
    true_windows,
)
from cubepose.models.crop import crop_cameras, crop_windows, to_input_pixels
from cubepose.serving.ros_node import PoseClient

ZOOM_LOSSES = {"keypoints": {"type": "heatmap", "weight": 1.0}, "detection": {"type": "detection", "weight": 1.0}}
ZOOM_CONFIGS = [*CONFIGS, str(REPO / "configs" / "ur3_cpu.yaml")]


def zoom_config(image_size: int = 256, **zoom) -> dict:
    network = {"type": "zoom", "image_size": image_size, "zoom": {"locate_size": 64, "crop_size": 64, **zoom}}
    return validate_config({"network": network, "losses": ZOOM_LOSSES})


def blobs(pixels: torch.Tensor, size: int, sigma: float = 1.5) -> torch.Tensor:
    """One image channel (K, size, size) per point of ``pixels`` (K, 2): a Gaussian centred on it (pixel
    centres at +0.5, cubepose's convention)."""
    grid = torch.arange(size, dtype=torch.float64) + 0.5
    du = grid[None, None, :] - pixels[:, 0, None, None]
    dv = grid[None, :, None] - pixels[:, 1, None, None]
    return torch.exp(-(du**2 + dv**2) / (2 * sigma**2))


def test_a_crops_camera_projects_the_box_onto_the_crop_within_a_pixel():
    """Cut real crops (grid_sample) of images that show each keypoint as a blob: the blobs appear where the
    crop's camera projects the keypoints. An off-centre camera with fx != fy and a window off the object."""
    size, crop = 512, 64
    camera = torch.tensor([[430.0, 560.0, 281.0, 233.0]], dtype=torch.float64)
    translation = torch.tensor([[0.21, -0.13, 1.9]], dtype=torch.float64)
    quaternion = roma.rotvec_to_unitquat(torch.tensor([[0.4, -1.1, 0.7]], dtype=torch.float64))
    points = torch.as_tensor(object_keypoints(Box()))
    pixels = keypoint_pixels(points, translation, quaternion, camera)  # (1, 9, 2) in the input
    windows = true_windows({"translation": translation, "camera": camera}, {"margin": 1.5}, size, Box().radius)
    windows = windows + torch.tensor([[0.01, -0.008, 0.1]], dtype=torch.float64)  # as stage 1 errs
    crops = crop_windows(blobs(pixels[0], size)[None], windows, crop)[0]  # (9, crop, crop)
    grid = torch.arange(crop, dtype=torch.float64) + 0.5
    found = (
        torch.stack([(crops * grid).sum((1, 2)), (crops * grid[:, None]).sum((1, 2))], -1) / crops.sum((1, 2))[:, None]
    )
    expected = keypoint_pixels(points, translation, quaternion, crop_cameras(camera, windows, size, crop))[0]
    assert (found - expected).norm(dim=-1).max() < 1.0
    assert (found - expected).norm(dim=-1).max() < 0.1  # in fact sub-pixel: only the bilinear sampling differs
    torch.testing.assert_close(to_input_pixels(expected[None], windows, size, crop), pixels, atol=1e-6, rtol=0)


def test_perfect_maps_find_the_object_and_solve_to_the_true_pose():
    """Stage 1's targets decode to the true window; stage 2's targets on that crop solve to the true pose, in the
    input camera's frame, and the loss of a perfect prediction is the floor of the heatmap terms (zero offsets)."""
    config = zoom_config()
    network = pose_network(config).eval()
    targets = random_poses(6)
    targets["camera"] = torch.tensor([[230.0, 260.0, 120.0, 136.0]]).expand(6, 4)
    outputs = perfect_outputs(config, network, targets)
    expected = true_windows(targets, config["network"]["zoom"], 256, Box().radius)
    torch.testing.assert_close(outputs["windows"], expected, atol=2e-3, rtol=0)
    poses = network.poses(outputs, targets["camera"])
    assert poses["found"].tolist() == [1.0] * 6
    assert (poses["translation"] - targets["translation"]).norm(dim=-1).max() < 1e-3  # metres
    angle = roma.rotmat_geodesic_distance(
        roma.unitquat_to_rotmat(poses["quaternion"]), roma.unitquat_to_rotmat(targets["quaternion"])
    )
    assert angle.max() < math.radians(0.1)
    losses = Criterion.from_config(config)(outputs, targets)
    assert torch.isfinite(losses["total"]).all()


def perfect_outputs(config: dict, network, targets: dict) -> dict:
    """What a perfect zoom-in model outputs for ``targets``: stage 1's targets and stage 2's on the true crop."""
    located = locator_target(config["network"])(targets)
    maps = LocatorMaps(located.heatmap, located.offsets, located.size[:, None])
    windows = network.detected_windows(maps)[:, 0]  # the strongest candidate
    crop_targets = keypoints_target(config["network"])({**targets, "windows": windows})
    outputs = {"locator_heatmap": maps.heatmap, "locator_offsets": maps.offsets, "locator_size": maps.size}
    return {**outputs, "windows": windows, "heatmaps": crop_targets.heatmaps, "offsets": crop_targets.offsets}


def test_a_gross_solve_is_withheld_never_printed_as_a_confident_pose():
    """Keypoints that put the cube twice as far as it looks (corners pulled to half their spread): the solve's
    depth disagrees with stage 1's apparent size, so the pose is withheld (found 0, confidence 0) and its JSON
    record says so; the good solves beside it stay found and confident. The evaluation counts it as a miss."""
    config = zoom_config()
    network = pose_network(config).eval()
    targets = random_poses(4)
    targets["camera"] = torch.tensor([[230.0, 260.0, 120.0, 136.0]]).expand(4, 4)
    outputs = perfect_outputs(config, network, targets)
    cameras = crop_cameras(targets["camera"], outputs["windows"], 256, 64)
    points = torch.as_tensor(object_keypoints(Box()), dtype=torch.float32)
    pixels = keypoint_pixels(points, targets["translation"], targets["quaternion"], cameras)
    shrunk = pixels[0, :1] + 0.5 * (pixels[0] - pixels[0, :1])  # image 0: the corners at half their spread
    bad = keypoint_targets(shrunk[None], 64, 4, 0.75, 1.5)
    outputs["heatmaps"][0], outputs["offsets"][0] = bad.heatmaps[0], bad.offsets[0]
    poses = {key: value.numpy() for key, value in network.poses(outputs, targets["camera"]).items()}
    assert poses["translation"][0, 2] > 1.6 * targets["translation"][0, 2].item()  # the gross solve: twice as far
    assert poses["found"].tolist() == [0.0, 1.0, 1.0, 1.0]
    assert poses["confidence"][0] == 0 and (poses["confidence"][1:] > 0.5).all()
    (pose,) = as_json_record("image 0", poses, 0)["poses"]
    assert pose["found"] is False and "do not act on this pose" in pose["reason"] and pose["confidence"] == 0
    assert "found" not in as_json_record("image 1", poses, 1)["poses"][0]
    truth = {key: targets[key].numpy() for key in ("translation", "quaternion")}
    evaluated = Evaluation.of(EvalOutputs.of(poses, truth))
    assert evaluated.pose["withheld_predictions"] == 1 and evaluated.pose["accuracy_5cm_5deg"] == 0.75
    assert evaluated.pose["translation_error_cm_max"] < 0.1  # the worst case among the poses given out
    saved = EvalOutputs.from_labels(EvalOutputs.of(poses, truth).labels())
    assert saved.found[:, 0].tolist() == [False, True, True, True]


def test_stage_1_offers_its_strongest_peaks_strongest_first_each_with_its_own_place_and_size():
    """Two objects on stage 1's maps: the candidates are both centres (sub-cell exact, by the offsets), the
    stronger first, each with the size at its own peak; one candidate is the strongest alone."""
    config = zoom_config()
    targets = random_poses(2)
    targets["camera"] = torch.tensor([[230.0, 260.0, 120.0, 136.0]]).expand(2, 4)
    located = locator_target(config["network"])(targets)  # image 0's object and image 1's, drawn on one map
    heatmap = torch.maximum(located.heatmap[0], 0.6 * located.heatmap[1])[None]
    nearer = located.heatmap[1] * 0.6 > located.heatmap[0]  # cells that belong to the weaker object
    offsets = torch.where(nearer[:, None], located.offsets[1], located.offsets[0])[None]
    size = torch.where(nearer, located.size[1, None], located.size[0, None])[None]
    centres, scores, radii = decode_locator(LocatorMaps(heatmap, offsets, size), 4, 256 / 64, count=2)
    true_centres, true_radii = apparent_centre_and_radius(targets["translation"], targets["camera"], Box().radius)
    torch.testing.assert_close(centres[0], true_centres, atol=0.05, rtol=0)
    torch.testing.assert_close(radii[0] * 256, true_radii, rtol=1e-5, atol=0)
    assert scores[0, 0] > scores[0, 1] > 0.3
    strongest, _, _ = decode_locator(LocatorMaps(heatmap, offsets, size), 4, 256 / 64)
    torch.testing.assert_close(strongest[:, 0], centres[:, 0])


def test_the_zoom_models_config_rules_name_the_fix():
    with pytest.raises(ConfigError, match="losses/detection"):
        validate_config({"network": {"type": "zoom"}, "losses": {"keypoints": ZOOM_LOSSES["keypoints"]}})
    with pytest.raises(ConfigError, match="network/zoom/crop_size 40 must be a multiple of 16"):
        zoom_config(crop_size=40)
    with pytest.raises(ConfigError, match="locate_size 512 is larger than network/image_size 256"):
        zoom_config(locate_size=512)
    with pytest.raises(ConfigError, match="use it with network/type keypoints"):  # each crop holds one instance
        several = {**ZOOM_LOSSES, "displacements": {"type": "displacement"}}
        validate_config({"network": {"type": "zoom"}, "losses": several, "data": {"max_instances": 3}})
    with pytest.raises(ConfigError, match="losses/detection trains the zoom-in model"):
        validate_config({"losses": {**ZOOM_LOSSES}, "network": {"type": "keypoints"}})


def test_the_ur3_recipe_trains_evaluates_and_predicts_through_edflow(tiny_data, tmp_path):
    """ur3_cpu.yaml through the real CLI at the tiny data's size: both stages learn in one TrainingStep, the
    evaluation crops where stage 1 finds the cube, and `cubepose predict` solves with a given camera."""
    sizes = ["--network/image_size", "64", "--network/zoom/locate_size", "32", "--network/zoom/crop_size", "32"]
    sizes += ["--network/zoom/depth_tolerance", "1e-9"]  # every pose withheld: how the evaluation reports it
    sizes += ["--network/zoom/candidates", "2"]  # stage 2 on stage 1's two strongest peaks, the clearer kept
    _ok(edflow(["-n", "zoom", "-b", *ZOOM_CONFIGS, "-t", "--num_steps", "4", *sizes], tmp_path, tiny_data))
    (run,) = (tmp_path / "logs").glob("*_zoom")
    checkpoint = run / "train" / "checkpoints" / "model-4.ckpt"
    state = torch.load(checkpoint, weights_only=True)
    assert state["config"]["network"]["type"] == "zoom"
    assert "locator.size_head.weight" in state["model"] and "keypoint_net.heatmap_head.weight" in state["model"]
    log = (run / "train" / "log.txt").read_text()
    assert "loss_detection" in log and "loss_keypoints" in log
    (metrics,) = run.glob("eval/*/*/metrics.json")
    values = json.loads(metrics.read_text())
    assert values["withheld_predictions"] == values["instances"] and values["accuracy_5cm_5deg"] == 0
    assert values["translation_error_cm_mean"] is None  # no pose given out, so no error to average
    report = (metrics.parent / "report.html").read_text()
    assert f"{values['instances']} of {values['instances']} poses were withheld" in report and "(withheld)" in report
    # evaluating the checkpoint again reproduces the run's own poses: the crops follow stage 1, not the truth
    _ok(edflow(["-b", *ZOOM_CONFIGS, "-p", str(run), *sizes], tmp_path, tiny_data))
    during, after = (MetaDataset(str(outputs)).labels for outputs in _eval_dirs(run))
    for key in ("translation_pred", "quaternion_pred"):
        np.testing.assert_allclose(after[key], during[key], atol=1e-5)
    image = sorted((tiny_data["test"]).rglob("*.png"))[0]
    result = subprocess.run(
        [
            str(BIN / "cubepose"),
            "predict",
            "--checkpoint",
            str(checkpoint),
            "--intrinsics",
            "40",
            "40",
            "24",
            "24",
            str(image),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    exported = subprocess.run(
        [
            str(BIN / "cubepose"),
            "export",
            "--checkpoint",
            str(checkpoint),
            "--format",
            "torchscript",
            str(tmp_path / "m"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert exported.returncode == 0, exported.stderr[-2000:]
    note = json.loads((tmp_path / "m.json").read_text())
    assert list(note["outputs"]) == ["keypoints", "scores", "radius", "located"] and "found" in note
    (pose,) = record["poses"]
    assert len(pose["translation"]) == 3 and pose["quaternion"][3] >= 0 and 0 <= pose["confidence"] <= 1


def test_serve_says_a_pose_is_withheld_and_the_ros_node_refuses_to_pass_it_on(tmp_path):
    """A zoom-in model that withholds every pose (depth_tolerance 1e-9): `cubepose serve` answers the pose with
    found false and the reason, and the drop-in for Unity's service raises instead of handing the arm a pose."""
    config = zoom_config(image_size=64, locate_size=32, crop_size=32, depth_tolerance=1e-9)
    checkpoint = tmp_path / "zoom.ckpt"
    PosePredictor(pose_network(config).eval(), config).save(checkpoint)
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    body = b"P6 64 48 255\n" + image.tobytes()
    url, process = start_serve(BIN / "cubepose", checkpoint, tmp_path / "serve.log")
    try:
        client = PoseClient(url, (60.0, 60.0, 32.0, 24.0), timeout_s=60)
        with pytest.raises(RuntimeError, match="withheld the pose"):
            client.strongest_pose(body)
        answer = requests.post(f"{url}/predict?fx=60&fy=60&cx=32&cy=24", data=body, timeout=60).json()
        (pose,) = answer["poses"]
        assert pose["found"] is False and pose["confidence"] == 0 and "do not act on this pose" in pose["reason"]
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_an_export_holds_both_stages_and_its_note_gives_the_predictors_pose_and_verdict(fmt, tmp_path):
    """The exported graph (stage 1, the crop, stage 2, decoding) returns the keypoints the predictor solves with,
    in the input's pixels, for a batch of another size than traced; the note's check on them (depth against the
    apparent radius, reprojection error scaled to crop pixels, scores) reproduces the predictor's ``found``."""
    config = zoom_config(image_size=64, locate_size=32, crop_size=32, candidates=2, depth_tolerance=0.5)
    predictor = PosePredictor(pose_network(config).eval(), config, "cpu")
    out = export_model(predictor, tmp_path / f"zoom.{fmt}", fmt)
    note = json.loads(out.with_name(out.name + ".json").read_text())
    images = np.random.default_rng(2).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    inputs = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    if fmt == "torchscript":
        with torch.no_grad():
            keypoints, scores, radius, located = (t.numpy() for t in torch.jit.load(str(out))(inputs))
    else:
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        keypoints, scores, radius, located = session.run(list(note["outputs"]), {"images": inputs.numpy()})
    camera = np.array([[70.0, 60.0, 30.0, 35.0]], np.float32).repeat(5, 0)
    expected = predictor.predict_batch(images, camera)
    np.testing.assert_allclose(keypoints, expected["keypoints"], atol=1e-3, rtol=0)
    np.testing.assert_allclose(scores, expected["scores"], atol=1e-5, rtol=0)
    # the note's check, on the predictor's pose and the exported outputs
    limits, camera = note["thresholds"], torch.from_numpy(camera)
    depth = camera[:, :2].amax(dim=1).numpy() * note["object_radius"] / radius
    points = torch.tensor(note["object_points"])
    projected = keypoint_pixels(
        points, torch.from_numpy(expected["translation"]), torch.from_numpy(expected["quaternion"]), camera
    )
    error = np.linalg.norm(projected.numpy() - keypoints, axis=-1).mean(-1) * 32 / (2 * 1.5 * radius)
    np.testing.assert_allclose(error, expected["reprojection_error"], rtol=1e-3, atol=1e-3)
    found = np.abs(np.log(expected["translation"][:, 2] / depth)) <= np.log1p(limits["depth_tolerance"])
    found &= (error <= limits["max_reprojection_error"]) & (located >= limits["min_score"])
    found &= np.clip(scores, 0, 1).mean(-1) >= limits["min_confidence"]
    np.testing.assert_array_equal(found, expected["found"].astype(bool))


def test_every_batch_of_a_model_that_withholds_saves_which_poses_it_gave_out():
    """edflow's evaluation sizes its arrays from the first batch's keys and fills each later batch's rows by key: a
    batch whose poses were all given out must save ``found_pred`` too, or a later batch's is lost or left 0."""
    truth = {"translation": np.array([[0.0, 0.0, 1.0], [0.1, 0.0, 1.0]]), "quaternion": np.tile([0, 0, 0, 1.0], (2, 1))}
    poses = {**truth, "confidence": np.array([0.8, 0.7])}
    given_out = EvalOutputs.of({**poses, "found": np.array([1.0, 1.0])}, truth).labels()
    one_withheld = EvalOutputs.of({**poses, "found": np.array([1.0, 0.0])}, truth).labels()
    assert given_out.keys() == one_withheld.keys()
    assert given_out["found_pred"].tolist() == [1, 1] and one_withheld["found_pred"].tolist() == [1, 0]
    assert "found_pred" not in EvalOutputs.of(poses, truth).labels()  # a model that never withholds
