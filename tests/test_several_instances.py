"""Several instances of the object per image: read, generated, learnt and decoded.

Real SOLO files (edited captures: two instances of the label, a frame with none), the real renderer, and the
keypoint network's targets read back as if it had predicted them perfectly.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from edflow.data.believers.meta import MetaDataset
from test_edflow_e2e import CONFIGS, _eval_dirs, _ok, edflow
from test_keypoint_model import KEYPOINT_CONFIGS

from conftest import BIN, REPO
from cubepose.config import validate_config
from cubepose.data import TrainDataset
from cubepose.data.formats import read_dataset
from cubepose.errors import ConfigError
from cubepose.evaluation.matching import average_precision, detection_metrics, match_instances
from cubepose.geometry.object import Box
from cubepose.inference.export import export_model
from cubepose.inference.predictor import PosePredictor
from cubepose.losses import Criterion
from cubepose.models import pose_network
from cubepose.models.codecs.heatmaps import DisplacementTargets
from cubepose.models.codecs.zoom import (
    LocatorMaps,
    apparent_centre_and_radius,
    decode_locator,
    locator_target,
    true_windows,
)
from cubepose.synth.generate import GenerationOptions, generate_dataset, scene_options

SEVERAL_LOSSES = {"keypoints": {"type": "heatmap"}, "displacements": {"type": "displacement"}}


def several_config(slots: int = 3, **network) -> dict:
    network = {"type": "keypoints", "image_size": 128, **network}
    return validate_config({"network": network, "losses": SEVERAL_LOSSES, "data": {"max_instances": slots}})


@pytest.fixture(scope="module")
def single_solo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("solo") / "one"
    generate_dataset(root, GenerationOptions(count=6, seed=4, image_size=48, format="solo"))
    return root


@pytest.fixture
def edited_solo(single_solo, tmp_path) -> Path:
    """Frame 0 with a second instance of the label, frame 1 with none (an empty box annotation)."""
    root = Path(shutil.copytree(single_solo, tmp_path / "solo"))
    for sequence, edit in ((0, "second"), (1, "empty")):
        path = root / f"sequence.{sequence}" / "step0.frame_data.json"
        frame = json.loads(path.read_text())
        values = frame["captures"][0]["annotations"][0]["values"]
        if edit == "second":
            other = {**values[0], "instanceId": 2, "translation": [0.2, 0.0, 0.6]}
            values.append(other)
        else:
            values.clear()
        path.write_text(json.dumps(frame))
    return root


def test_a_single_object_reader_skips_several_and_empty_captures_and_a_several_one_keeps_them(edited_solo):
    single = read_dataset(edited_solo)
    assert len(single) == 4 and single.translations.shape == (4, 1, 3)
    assert single.skipped["empty annotation"] == 1
    assert single.skipped["several instances (set data/instance_id or data/max_instances)"] == 1
    picked = read_dataset(edited_solo, instance_id=2)
    assert len(picked) == 1 and np.allclose(picked.translations[0, 0], [0.2, 0.0, 0.6])

    several = read_dataset(edited_solo, max_instances=3)
    assert len(several) == 6 and not several.skipped
    np.testing.assert_array_equal(several.instance_counts, [2, 0, 1, 1, 1, 1])
    assert several.translations.shape == (6, 3, 3)
    np.testing.assert_allclose(several.translations[0, 1], [0.2, 0.0, 0.6])
    np.testing.assert_allclose(several.translations[2:, 0], single.translations[:, 0])  # frames 2-5 alike
    assert np.isnan(several.translations[1]).all() and np.isnan(several.translations[0, 2]).all()
    assert len(read_dataset(edited_solo, instance_id=1)) == 5  # frame 0's first instance; frame 1 holds none
    assert len(read_dataset(edited_solo, max_instances=2)) == 6  # frame 0 fits exactly


def test_examples_carry_every_instance_padded_with_a_harmless_pose(edited_solo):
    config = several_config(3, image_size=32)
    for split in ("train", "validation", "test"):
        config["data"][split]["root"] = str(edited_solo)
    dataset = TrainDataset(config)
    empty, two = dataset[1], dataset[0]
    assert empty["instance_count"] == 0 and two["instance_count"] == 2
    assert two["translations"].shape == (3, 3) and two["quaternions"].shape == (3, 4)
    np.testing.assert_allclose(two["translations"][1], [0.2, 0.0, 0.6])
    np.testing.assert_array_equal(empty["translations"], np.tile([0.0, 0.0, 1.0], (3, 1)))
    np.testing.assert_array_equal(empty["quaternions"], np.tile([0.0, 0.0, 0.0, 1.0], (3, 1)))
    assert np.isfinite(empty["translation"]).all()


def test_generated_scenes_hold_separate_instances_inside_the_view_and_some_images_none(tmp_path):
    scene = scene_options(objects=(2, 4), empty_fraction=0.25)
    root = tmp_path / "several"
    generate_dataset(root, GenerationOptions(count=16, seed=3, image_size=64, format="solo", scene=scene))
    index = read_dataset(root, max_instances=4)
    counts = index.instance_counts
    assert len(index) == 16 and set(counts) <= {0, 1, 2, 3, 4} and 0 in counts and (counts >= 3).any()
    radius = Box().radius
    present = index.present
    for translations, slots in zip(index.translations, present, strict=True):  # a handful of images
        centres = translations[slots]
        gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1)[np.triu_indices(len(centres), 1)]
        assert np.all(gaps > 2 * radius)  # bounding spheres apart: the instances never overlap
    fx, fy, cx, cy = index.cameras[0]
    u = cx + fx * index.translations[..., 0] / index.translations[..., 2]
    v = cy - fy * index.translations[..., 1] / index.translations[..., 2]
    assert np.all((u[present] > 0) & (u[present] < 64) & (v[present] > 0) & (v[present] < 64))
    single = read_dataset(root)
    assert len(single) == 0 or (single.instance_counts == 1).all()


def placed_instances() -> dict[str, torch.Tensor]:
    """Four images of up to three instances 0.25 m apart at 0.7 m (counts 3, 1, 0, 2), any rotation."""
    generator = torch.Generator().manual_seed(1)
    columns = torch.tensor([-0.25, 0.0, 0.25])
    translations = torch.stack([columns, torch.zeros(3), torch.full((3,), 0.7)], dim=1).expand(4, 3, 3).clone()
    translations[:, :, 1] += torch.rand(4, 3, generator=generator) * 0.1 - 0.05
    quaternions = torch.nn.functional.normalize(torch.randn(4, 3, 4, generator=generator), dim=-1)
    quaternions = torch.where(quaternions[..., 3:] < 0, -quaternions, quaternions)
    counts = torch.tensor([3, 1, 0, 2])
    camera = torch.tensor([[110.0, 112.0, 64.0, 62.0]]).expand(4, 4)
    return {
        "translation": translations[:, 0],
        "quaternion": quaternions[:, 0],
        "translations": translations,
        "quaternions": quaternions,
        "instance_count": counts,
        "camera": camera,
    }


def packed(target) -> torch.Tensor:
    """A keypoint target (heatmaps, offsets, mask) or a displacement target (displacements, mask) as one
    (B, C, H, W) tensor, the mask last, for comparisons."""
    if isinstance(target, DisplacementTargets):
        return torch.cat([target.displacements, target.mask[:, None]], dim=1)
    return torch.cat([target.heatmaps, target.offsets.flatten(1, 2), target.mask], dim=1)


def test_perfect_several_instance_outputs_have_zero_loss_and_decode_to_every_pose():
    config = several_config(3)
    network, criterion = pose_network(config).eval(), Criterion.from_config(config)
    targets = placed_instances()
    keypoints, displacements = (packed(term.target(targets)) for term in criterion.terms)
    assert displacements.shape == (4, 17, 32, 32)
    outputs = {
        "heatmaps": keypoints[:, :9],
        "offsets": keypoints[:, 9:27].unflatten(1, (9, 2)),
        "displacements": displacements[:, :16],
    }
    assert criterion(outputs, targets)["total"].abs().max() < 1e-6
    assert displacements[2, 16].sum() == 0  # the empty image trains no displacement

    poses = network.poses(outputs, targets["camera"])
    assert poses["translation"].shape == (4, 3, 3) and poses["keypoints"].shape == (4, 3, 9, 2)
    found = poses["scores"][..., 0] > 0.5
    np.testing.assert_array_equal(found.sum(dim=1), targets["instance_count"])
    for image, count in enumerate(targets["instance_count"].tolist()):
        for slot in range(count):
            truth = targets["translations"][image, slot]
            distances = torch.where(found[image], (poses["translation"][image] - truth).norm(dim=-1), torch.inf)
            nearest = int(distances.argmin())  # the found slot nearest this instance
            assert distances[nearest] < 1e-3
            agreement = (poses["quaternion"][image, nearest] * targets["quaternions"][image, slot]).sum().abs()
            assert agreement > 1 - 1e-5


def test_displacements_point_from_the_cells_around_a_centre_to_its_own_corners():
    config = several_config(3)
    criterion = Criterion.from_config(config)
    targets = placed_instances()
    keypoints, displacements = (packed(term.target(targets)) for term in criterion.terms)
    outputs = {"heatmaps": keypoints[:, :9], "offsets": keypoints[:, 9:27].unflatten(1, (9, 2))}
    wrong = {**outputs, "displacements": displacements[:, :16].roll(1, dims=2)}  # each centre points one cell off
    values = criterion(wrong, targets)
    assert values["displacements"][:2].min() > 0.4 and values["displacements"][2] == 0
    assert values["keypoints"].abs().max() < 1e-6


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"network": {"type": "regression"}, "losses": {"translation": {"type": "mse"}}}, "predicts one pose per"),
        ({"network": {"type": "keypoints"}, "losses": {"keypoints": {"type": "heatmap"}}}, "needs losses/displacem"),
    ],
)
def test_only_a_keypoint_model_with_displacements_takes_several_instances(settings, message):
    config = {"data": {"max_instances": 2}, **settings}
    config["network"]["image_size"] = 64
    with pytest.raises(ConfigError, match=message):
        pose_network(validate_config(config))
    single = {"network": {"type": "keypoints", "image_size": 64}, "losses": SEVERAL_LOSSES}
    with pytest.raises(ConfigError, match="losses/displacements trains the keypoint network.s several-instance head"):
        pose_network(validate_config(single))


@pytest.fixture(scope="module")
def several_data(tmp_path_factory) -> dict[str, Path]:
    """SOLO splits of 48 px images holding 1-3 cubes, a quarter of them none."""
    root = tmp_path_factory.mktemp("several")
    scene = scene_options(objects=(1, 3), empty_fraction=0.25)
    for seed, (split, count) in enumerate({"train": 32, "validation": 8, "test": 8}.items(), start=1):
        options = GenerationOptions(count=count, seed=seed, image_size=48, format="solo", scene=scene)
        generate_dataset(root / split, options)
    return {split: root / split for split in ("train", "validation", "test")}


@pytest.fixture(scope="module")
def several_run(several_data, tmp_path_factory) -> Path:
    """keypoints_cpu.yaml + several.yaml trained 4 steps through the real edflow, then evaluated."""
    work = tmp_path_factory.mktemp("several-run")
    configs = [*KEYPOINT_CONFIGS, str(REPO / "configs" / "several.yaml")]
    _ok(edflow(["-n", "many", "-b", *configs, "-t", "--num_steps", "4"], work, several_data))
    (run,) = (work / "logs").glob("*_many")
    return run


def test_several_instances_train_and_evaluate_through_edflow_with_detection_metrics(several_run):
    outputs = _eval_dirs(several_run)[-1]
    labels = MetaDataset(str(outputs)).labels
    assert labels["translations_pred"].shape == (8, 4, 3) and labels["found_pred"].shape == (8, 4)
    metrics = json.loads((outputs.parent / "metrics.json").read_text())
    counts = labels["instance_count"].astype(int)
    assert metrics["instances"] == counts.sum() and metrics["predictions"] == int((labels["found_pred"] > 0.5).sum())
    for key in ("recall_5cm_5deg", "precision_add", "ap_5cm_5deg", "ap_add", "missed_instances"):
        assert key in metrics
    with open(outputs.parent / "errors.csv") as handle:
        rows = list(csv.DictReader(handle))
    kinds = [row["kind"] for row in rows]
    assert kinds.count("matched") + kinds.count("missed") == counts.sum()
    assert kinds.count("spurious") == metrics["spurious_predictions"]
    assert "spurious" in (outputs.parent / "report.html").read_text()


def predicted_by_the_cli(checkpoint: Path, data: dict[str, Path]) -> tuple[list[str], list[dict]]:
    """Three test images and the JSON records the real `cubepose predict` prints for them."""
    images = sorted(str(p) for p in Path(data["test"]).glob("sequence.*/step0.camera.png"))[:3]
    predict = [str(BIN / "cubepose"), "predict", "--checkpoint", str(checkpoint), *images]
    output = _ok(subprocess.run(predict, capture_output=True, text=True)).stdout
    return images, [json.loads(line) for line in output.splitlines()]


def test_predict_lists_every_instance_found_and_exports_the_slots(several_run, several_data, tmp_path):
    predictor = PosePredictor.load(several_run / "train" / "checkpoints" / "model-4.ckpt")
    predictor.config["network"]["keypoints"]["min_score"] = predictor.model.min_score = -1e9  # every slot found
    checkpoint = tmp_path / "model-4.ckpt"
    predictor.save(checkpoint)
    images, records = predicted_by_the_cli(checkpoint, several_data)
    poses = predictor.predict(images)
    for record, found, translations in zip(records, poses["found"], poses["translation"], strict=True):
        assert len(record["poses"]) == int(found.sum()) == 4
        np.testing.assert_allclose([p["translation"] for p in record["poses"]], translations, atol=1e-4)
    export_model(predictor, tmp_path / "many.pt", "torchscript")
    contract = json.loads((tmp_path / "many.pt.json").read_text())
    assert contract["min_score"] == -1e9 and "slots per image" in contract["instances"]
    assert contract["outputs"]["keypoints"].startswith("(N, P, 9, 2)")


def test_matching_pairs_the_most_confident_first_and_scores_recall_precision_and_ap_by_hand():
    """Three images, hand-placed: image 0 holds A and B, predicted 1 cm and 8 cm off and once far from both
    (spurious); image 1 holds C, predicted exactly; image 2 holds D, predicted exactly with confidence 0.3 and
    3 cm off with 0.9: the confident one takes D, the exact one is spurious."""
    nowhere = [0.0, 0.0, 1.0]
    true_t = np.array([[[0, 0, 0.5], [0.2, 0, 0.5]], [[0, 0, 0.6], nowhere], [[0, 0, 0.5], nowhere]])
    present = np.array([[True, True], [True, False], [True, False]])
    pred_t = np.array(
        [
            [[0.01, 0, 0.5], [0.28, 0, 0.5], [0.5, 0, 0.5]],
            [nowhere, [0, 0, 0.6], nowhere],
            [[0, 0, 0.5], [0.03, 0, 0.5], nowhere],
        ]
    )
    found = np.array([[True, True, True], [False, True, False], [True, True, False]])
    confidence = np.array([[0.9, 0.8, 0.2], [0.1, 0.5, 0.1], [0.3, 0.9, 0.1]])
    identity = np.array([0.0, 0.0, 0.0, 1.0])
    matches = match_instances(
        pred_t, np.tile(identity, (3, 3, 1)), found, confidence, true_t, np.tile(identity, (3, 2, 1)), present
    )
    np.testing.assert_array_equal(matches.truth_slot, [[0, 1], [1, -1], [1, -1]])
    np.testing.assert_array_equal(matches.prediction_truth, [[0, 1, -1], [-1, 0, -1], [-1, 0, -1]])
    np.testing.assert_allclose(matches.truth_errors()["translation_error_cm"][present], [1, 8, 0, 3], atol=1e-9)
    metrics = detection_metrics(matches)
    assert metrics["instances"] == 4 and metrics["predictions"] == 6
    assert metrics["missed_instances"] == 0 and metrics["spurious_predictions"] == 2
    assert metrics["recall_5cm_5deg"] == 3 / 4 and metrics["precision_5cm_5deg"] == 3 / 6
    assert metrics["recall_add"] == 2 / 4 and metrics["precision_add"] == 2 / 6  # ADD below 1.73 cm
    assert metrics["ap_5cm_5deg"] == pytest.approx(0.6875) and metrics["ap_add"] == pytest.approx(0.375)
    assert np.isnan(average_precision(np.array([]), np.array([], bool), 0))  # no true instance: undefined


def zoom_several_config(**zoom) -> dict:
    network = {"type": "zoom", "image_size": 128, "zoom": {"locate_size": 64, "crop_size": 64, **zoom}}
    losses = {"keypoints": {"type": "heatmap"}, "detection": {"type": "detection"}}
    return validate_config({"network": network, "losses": losses, "data": {"max_instances": 3}})


def test_the_zoom_in_models_stage_1_finds_every_instance_and_each_crop_learns_the_one_it_is_centred_on():
    """Perfect stage-1 maps of several instances cost nothing and decode to every centre and size; stage 2's
    targets on a crop are those of the instance the crop is centred on alone, as a one-instance image's."""
    config = zoom_several_config()
    criterion = Criterion.from_config(config)
    targets = placed_instances()
    located = locator_target(config["network"])(targets)
    maps = LocatorMaps(located.heatmap, located.offsets, located.size[:, None])
    stage_1 = {"locator_heatmap": maps.heatmap, "locator_offsets": maps.offsets, "locator_size": maps.size}
    detection = next(term for term in criterion.terms if term.name == "detection")
    assert detection.loss(detection.prediction(stage_1), detection.target(targets)).abs().max() < 1e-6
    centres, scores, radii = decode_locator(maps, 4, 128 / 64, count=3)
    counts = targets["instance_count"]
    true_centres, true_radii = apparent_centre_and_radius(
        targets["translations"].flatten(0, 1), targets["camera"].repeat_interleave(3, dim=0), Box().radius
    )
    for image, count in enumerate(counts.tolist()):
        assert (scores[image] > 0.5).sum() == count  # one strong peak per instance, none without
        for slot in range(count):
            truth = true_centres.unflatten(0, (4, 3))[image, slot]
            nearest = (centres[image] - truth).norm(dim=-1).argmin()
            torch.testing.assert_close(centres[image, nearest], truth, atol=0.05, rtol=0)
            torch.testing.assert_close(radii[image, nearest] * 128, true_radii.unflatten(0, (4, 3))[image, slot])
    # a crop near instance 1 of image 0 (as stage 1 errs) is trained on that instance alone
    windows = true_windows(
        {"translation": targets["translations"][:, 1], "camera": targets["camera"]}, {"margin": 1.5}, 128, Box().radius
    )
    windows = windows + torch.tensor([0.02, -0.01, 0.05])
    keypoints = next(term for term in criterion.terms if term.name == "keypoints").target
    several = keypoints({**targets, "windows": windows})
    alone = {"translation": targets["translations"][:, 1], "quaternion": targets["quaternions"][:, 1]}
    single = keypoints({**alone, "camera": targets["camera"], "windows": windows})
    torch.testing.assert_close(several.heatmaps[0], single.heatmaps[0])
    torch.testing.assert_close(
        several.offsets[0] * several.mask[0, :, None], single.offsets[0] * single.mask[0, :, None]
    )
    assert several.heatmaps[2].max() == 0  # the image of none: nothing to find on its crop


def test_the_zoom_in_model_finds_several_instances_through_edflow_predict_and_export(several_data, tmp_path):
    """zoom_cpu.yaml with --data/max_instances 3 through the real edflow: every slot is a crop at one of stage 1's
    centres, evaluated with the detection metrics; `cubepose predict` lists the slots found and the export
    returns them with a slot axis."""
    sizes = ["--network/image_size", "48", "--network/zoom/locate_size", "32", "--network/zoom/crop_size", "32"]
    several = [*sizes, "--data/max_instances", "3"]
    configs = [*CONFIGS, str(REPO / "configs" / "zoom_cpu.yaml")]
    _ok(edflow(["-n", "zoomed", "-b", *configs, "-t", "--num_steps", "4", *several], tmp_path, several_data))
    (run,) = (tmp_path / "logs").glob("*_zoomed")
    outputs = _eval_dirs(run)[-1]
    labels = MetaDataset(str(outputs)).labels
    assert labels["translations_pred"].shape == (8, 3, 3) and labels["found_pred"].shape == (8, 3)
    metrics = json.loads((outputs.parent / "metrics.json").read_text())
    assert metrics["instances"] == labels["instance_count"].astype(int).sum() and "recall_5cm_5deg" in metrics
    predictor = PosePredictor.load(run / "train" / "checkpoints" / "model-4.ckpt")
    accept_all = {"depth_tolerance": 1e9, "max_reprojection_error": 1e9, "min_confidence": 0.0}
    predictor.model.zoom.update(accept_all)
    predictor.config["network"]["zoom"].update(accept_all)
    predictor.config["network"]["keypoints"]["min_score"] = predictor.model.keypoint_net.min_score = -1e9
    checkpoint = tmp_path / "every-slot.ckpt"
    predictor.save(checkpoint)
    images, records = predicted_by_the_cli(checkpoint, several_data)
    poses = PosePredictor.load(checkpoint).predict(images)
    for record, translations in zip(records, poses["translation"], strict=True):
        assert len(record["poses"]) == 3  # every slot passes the check that accepts all
        np.testing.assert_allclose([p["translation"] for p in record["poses"]], translations, atol=1e-4)
    out = export_model(PosePredictor.load(checkpoint), tmp_path / "zoomed.pt", "torchscript")
    note = json.loads((tmp_path / "zoomed.pt.json").read_text())
    assert "strongest centres" in note["instances"] and note["outputs"]["radius"].startswith("(N, P)")
    prepared = np.stack([predictor.prepare_item(image) for image in images])
    with torch.no_grad():
        keypoints, scores, radius, located = torch.jit.load(str(out))(
            torch.from_numpy(prepared).permute(0, 3, 1, 2) / 127.5 - 1
        )
    assert keypoints.shape == (3, 3, 9, 2) and radius.shape == located.shape == (3, 3)
    np.testing.assert_allclose(keypoints.numpy(), poses["keypoints"], atol=1e-3)
