"""The evaluation callbacks share one computation of the errors, work in any order, and the report
draws each instance with its own camera (an off-centre one included)."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from cubepose.engine.callbacks import evaluation_of, pose_metrics, report, unity_metrics
from cubepose.evaluation.html_report import TILE
from cubepose.evaluation.overlay import TRUE_COLOUR
from cubepose.geometry.rotations import random_quaternions

COUNT = 8
SIZE = 32  # the network input side of these outputs


def outputs(tmp_path: Path, cx: float, cy: float) -> tuple[SimpleNamespace, SimpleNamespace]:
    """data_in / data_out of an evaluation: 8 poses 0.4 m ahead, predictions 1 cm off, a grey image each."""
    rng = np.random.default_rng(3)
    translation = np.column_stack([rng.uniform(-0.02, 0.02, (COUNT, 2)), np.full(COUNT, 0.4)])
    quaternion = random_quaternions(rng, COUNT)
    paths = []
    for i in range(COUNT):
        paths.append(str(tmp_path / f"image_{i}.png"))
        Image.fromarray(np.full((SIZE, SIZE, 3), 90, np.uint8)).save(paths[-1])
    labels = {
        "translation_pred": translation + [0.01, 0, 0],
        "translation_true": translation,
        "quaternion_pred": quaternion,
        "quaternion_true": quaternion,
        "camera": np.tile([40.0, 40.0, cx, cy], (COUNT, 1)),
        "image_size": np.full((COUNT, 1), SIZE),
    }
    data_out = SimpleNamespace(labels={k: np.asarray(v, np.float32) for k, v in labels.items()})
    return SimpleNamespace(labels={"image_path": np.array(paths)}), data_out


def test_callbacks_compute_the_errors_once_and_give_the_same_files_in_any_order(tmp_path):
    config = {}
    pages = {}
    for order in ("forward", "reverse"):
        root = tmp_path / order / "eval" / "6"
        root.mkdir(parents=True)
        data_in, data_out = outputs(root.parent, SIZE / 2, SIZE / 2)
        callbacks = [unity_metrics, pose_metrics, report]
        for callback in callbacks if order == "forward" else callbacks[::-1]:
            callback(str(root), data_in, data_out, config)
        assert evaluation_of(str(root), data_out, config) is evaluation_of(str(root), data_out, config)
        metrics = json.loads((root / "metrics.json").read_text())
        errors = (root / "errors.csv").read_text().replace(f"/{order}/", "/")  # the images' folders differ
        pages[order] = (metrics, errors, (root / "report.html").read_text())
    assert pages["forward"][0] == pages["reverse"][0] and pages["forward"][1] == pages["reverse"][1]
    shown = set(re.findall(r"data-metric='([^']+)'", pages["reverse"][2]))
    assert set(pages["reverse"][0]) <= shown  # every metric, whichever callback wrote it first


def _shown_metrics(page: str, start: str, end: str) -> list[tuple[str, str, str]]:
    """(key, raw value, shown text) of the metric cells between two markers of the report."""
    part = page[page.index(start) : page.index(end)]
    return re.findall(r"<td[^>]* data-metric='([^']+)' data-value='([^']*)'>([^<]*)</td>", part)


def test_the_report_leads_with_the_summary_of_metrics_json_and_groups_every_metric(tmp_path):
    root = tmp_path / "eval" / "6"
    root.mkdir(parents=True)
    data_in, data_out = outputs(root.parent, SIZE / 2, SIZE / 2)
    for callback in (unity_metrics, pose_metrics, report):
        callback(str(root), data_in, data_out, {})
    metrics = json.loads((root / "metrics.json").read_text())
    page = (root / "report.html").read_text()
    assert page.index("class='headline'") < page.index("class='summary'") < page.index('<img class="plot"')
    assert page.index('<img class="plot"') < page.index("All metrics")  # plots before the full tables
    headline = re.search(r"<p class='headline'>([^<]*)</p>", page).group(1)
    mean_cm, mean_deg = metrics["translation_error_cm_mean"], metrics["rotation_error_deg_mean"]
    assert (
        f"{COUNT} of {COUNT} poses given" in headline
        and f"mean error {mean_cm:.2f} cm and {mean_deg:.2f} deg" in headline
    )
    summary = _shown_metrics(page, "class='summary'", "</div>")
    keys = [key for key, _, _ in summary]
    for key in ("translation_error_cm_p90", "rotation_error_deg_median", "add_cm_mean", "accuracy_5cm_5deg", "ar_mssd"):
        assert key in keys
    for key, raw, text in summary:
        if key == "found":
            assert text == str(COUNT)
            continue
        assert json.loads(raw) == metrics[key]
        number = float(text.split()[0])
        expected = 100 * metrics[key] if text.endswith("%") else metrics[key]
        assert abs(number - expected) <= 0.005 * abs(expected) + 0.05, (key, text)
    every = _shown_metrics(page, "All metrics", "</body>")
    assert {key for key, _, _ in every} == set(metrics)
    for prefix in ("mssd_recall_", "mspd_recall_"):
        thresholds = [float(key[len(prefix) :]) for key, _, _ in every if key.startswith(prefix)]
        assert len(thresholds) == 10 and thresholds == sorted(thresholds)  # 5 before 10 before 45, not lexical


def green_centroid(page: str) -> np.ndarray:
    """(u, v) of the true cube's pixels in the report's first gallery tile."""
    tile = re.search(r'<figure><img src="data:image/png;base64,([^"]+)"', page).group(1)
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(tile))).convert("RGB")).astype(int)
    mask = (np.abs(pixels - TRUE_COLOUR) < 30).all(axis=-1)
    v, u = np.nonzero(mask)
    return np.array([u.mean(), v.mean()])


def test_the_report_draws_with_an_off_centre_camera_at_the_right_scale(tmp_path):
    data_in, data_out = outputs(tmp_path, cx=8.0, cy=20.0)  # the principal point far from the centre
    root = tmp_path / "eval" / "6"
    root.mkdir(parents=True)
    report(str(root), data_in, data_out, {})
    worst = int(re.search(r"<figcaption>#(\d+):", (root / "report.html").read_text()).group(1))
    x, y, z = data_out.labels["translation_true"][worst]
    expected = np.array([8.0 + 40.0 * x / z, 20.0 - 40.0 * y / z]) * TILE / SIZE  # Unity's frame: v grows down
    np.testing.assert_allclose(green_centroid((root / "report.html").read_text()), expected, atol=0.05 * TILE)
