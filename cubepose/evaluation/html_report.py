"""`cubepose report`: one self-contained HTML page per evaluation, with pictures.

The headline in words and a summary table first (cubepose.evaluation.summary), then error
histograms, error against distance and true yaw, the 8 worst and 8 median instances with the true
(green) and predicted (red) cube drawn with each example's camera, and last every metric grouped,
with units. Built from an evaluation's saved outputs, so it never re-runs the model. For a symmetric
object, errors, rankings and captions are modulo its symmetries (``object/symmetries``).
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from cubepose.data.images import decode_resized
from cubepose.evaluation.evaluator import Evaluation
from cubepose.evaluation.outputs import EvalOutputs
from cubepose.evaluation.overlay import pose_overlays
from cubepose.evaluation.summary import SUMMARY_STATISTICS, Metric, grouped_metrics, headline, summary_table
from cubepose.geometry.object import Box
from cubepose.io.atomic import atomic_write_text

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"
SHOWN = 8  # instances per gallery
TILE = 256  # side of a gallery image in pixels


def _png(figure_or_image) -> str:
    buffer = io.BytesIO()
    if hasattr(figure_or_image, "savefig"):
        figure_or_image.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    else:
        figure_or_image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figures(errors: dict[str, np.ndarray]) -> list[str]:
    """Histogram and scatters per error; instances with a non-finite error are left out (matplotlib's
    histogram cannot bin NaN, and such predictions have no error to plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("translation_error_cm", "translation error (cm)"), ("rotation_error_deg", "rotation error (deg)")]
    images = []
    for key, title in panels:
        shown = np.isfinite(errors[key])
        values = errors[key][shown]
        figure, axes = plt.subplots(1, 3, figsize=(13, 3.2))
        axes[0].hist(values, bins=30, color="#4477aa")
        axes[0].set(title=title, xlabel=title, ylabel="instances")
        axes[1].scatter(errors["distance_m"][shown], values, s=6, alpha=0.6)
        axes[1].set(title=f"{title} vs distance", xlabel="distance to camera (m)", ylabel=title)
        axes[2].scatter(errors["true_yaw_deg"][shown], values, s=6, alpha=0.6)
        axes[2].set(title=f"{title} vs true yaw", xlabel="true yaw (deg)", ylabel=title)
        images.append(_png(figure))
        plt.close(figure)
    if "confidence" in errors:
        images.append(_confidence_figure(errors, plt))
    return images


def _confidence_figure(errors: dict[str, np.ndarray], plt) -> str:
    """A keypoint model's errors against its confidence and reprojection error: whether a robot can trust
    a low confidence as the sign to look again."""
    shown = np.isfinite(errors["translation_error_cm"]) & np.isfinite(errors["confidence"])
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    panels = [
        ("confidence", "translation_error_cm", "confidence (mean keypoint score)", "translation error (cm)"),
        ("confidence", "rotation_error_deg", "confidence (mean keypoint score)", "rotation error (deg)"),
        ("reprojection_error", "translation_error_cm", "reprojection error (px)", "translation error (cm)"),
    ]
    for axis, (x, y, x_label, y_label) in zip(axes, panels, strict=True):
        axis.scatter(errors[x][shown], errors[y][shown], s=6, alpha=0.6)
        axis.set(title=f"{y_label} vs {x_label.split(' (')[0]}", xlabel=x_label, ylabel=y_label)
    image = _png(figure)
    plt.close(figure)
    return image


def _input_sizes(outputs: EvalOutputs, indices: np.ndarray) -> np.ndarray:
    """Side of the network input of each image: recorded by eval_op, else twice cx (outputs of older
    evaluations, whose cameras were centred)."""
    if outputs.image_size is not None:
        return outputs.image_size[indices].astype(np.float64)
    return np.round(2 * outputs.camera[indices, 2])


def _gallery(title: str, indices: np.ndarray, evaluated: Evaluation, image_paths, captions: dict[int, str]) -> str:
    """Tiles of the images ``indices`` with every true (green) and predicted (red) pose drawn, captioned."""
    outputs = evaluated.outputs
    cameras = outputs.camera[indices]
    network_size = _input_sizes(outputs, indices)
    images = np.stack([decode_resized(str(image_paths[i]), TILE) for i in indices])
    true, predicted = outputs.drawn(indices)  # every present and found instance
    tiles = pose_overlays(images, cameras[:, :4] * (TILE / network_size)[:, None], true, predicted, box=evaluated.box)
    figures = []
    for i, tile in zip(indices, tiles, strict=True):
        image = _png(Image.fromarray(tile))
        figures.append(f'<figure><img src="{image}"><figcaption>{html.escape(captions[i])}</figcaption></figure>')
    return f"<h2>{html.escape(title)}</h2><div class='gallery'>{''.join(figures)}</div>"


def _ranked_images(evaluated: Evaluation) -> tuple[np.ndarray, dict[int, str]]:
    """Images from best to worst, and a caption for each: by ADD (a prediction without a finite pose is left
    out); with several instances by missed and spurious instances, then the worst ADD among its matched ones."""
    errors = evaluated.errors
    if "image_index" not in errors:
        rank = errors["add_cm"]
        ranked = np.flatnonzero(np.isfinite(rank))
        order = ranked[np.argsort(rank[ranked], kind="stable")]
        withheld = ~evaluated.outputs.found[:, 0]
        captions = {
            int(i): f"#{i}: {errors['translation_error_cm'][i]:.1f} cm, {errors['rotation_error_deg'][i]:.1f} deg"
            + (" (withheld)" if withheld[i] else "")
            for i in order
        }
        return order, captions
    images = len(evaluated.outputs)
    index, kind = errors["image_index"].astype(np.int64), errors["kind"]
    wrong = np.bincount(index, weights=kind != "matched", minlength=images)
    spurious = np.bincount(index, weights=kind == "spurious", minlength=images)
    worst = np.full(images, -np.inf)
    np.maximum.at(worst, index, np.where(np.isfinite(errors["add_cm"]), errors["add_cm"], -np.inf))
    order = np.lexsort((worst, wrong))
    counts = evaluated.outputs.present.sum(axis=1)
    captions = {
        int(i): f"#{i}: {counts[i] - int(wrong[i] - spurious[i])} of {counts[i]} found, {int(spurious[i])} spurious"
        + (f", worst ADD {worst[i]:.1f} cm" if np.isfinite(worst[i]) else "")
        for i in order
    }
    return order, captions


def _cell(metric: Metric) -> str:
    """A table cell showing ``metric`` in its unit; the metrics.json key and raw value ride along as data
    attributes, so a tool can read the page back."""
    raw = html.escape(json.dumps(metric.value, allow_nan=True, default=str))
    return f"<td data-metric='{html.escape(metric.key)}' data-value='{raw}'>{html.escape(metric.text)}</td>"


def _summary(metrics: dict) -> str:
    """The headline sentence, then the short tables a decision rests on: the errors' mean, median and p90,
    and the accuracies, ARs and counts."""
    rows = summary_table(metrics)
    header = "".join(f"<th scope='col'>{statistic}</th>" for statistic in SUMMARY_STATISTICS)
    errors = "".join(
        f"<tr><th scope='row'>{html.escape(label)}</th>{''.join(_cell(cell) for cell in cells)}</tr>"
        for label, cells in rows
        if len(cells) > 1
    )
    others = "".join(
        f"<tr><th scope='row'>{html.escape(label)}</th>{_cell(cells[0])}</tr>"
        for label, cells in rows
        if len(cells) == 1
    )
    return (
        f"<p class='headline'>{html.escape(headline(metrics))}</p><div class='summary'>"
        f"<table><caption>Errors</caption><tr><td></td>{header}</tr>{errors}</table>"
        f"<table><caption>Accuracies and counts</caption>{others}</table></div>"
    )


def _all_metrics(metrics: dict) -> str:
    """Every metric in metrics.json under its group, with what it measures and its unit."""
    sections = ["<h2>All metrics</h2>"]
    for title, group in grouped_metrics(metrics):
        rows = "".join(
            f"<tr><td><code>{html.escape(m.key)}</code></td><td>{html.escape(m.label)}</td>{_cell(m)}</tr>"
            for m in group
        )
        sections.append(
            f"<table class='metrics'><caption>{html.escape(title)}</caption>"
            f"<tr><th scope='col'>metric</th><th scope='col'>what</th><th scope='col'>value</th></tr>{rows}</table>"
        )
    return "".join(sections)


def _non_finite_note(count: int, total: int) -> str:
    """The paragraph saying how many predictions were NaN or inf and how they were treated (empty if none)."""
    if not count:
        return ""
    return (
        f"<p class='warning'>{count} of {total} predictions were not finite (NaN or inf): they are left out "
        "of the error averages, plots and galleries and count as failures in the accuracies "
        "(<code>non_finite_predictions</code> in metrics.json).</p>"
    )


def _withheld_note(count: int, total: int) -> str:
    """The paragraph saying how many poses the model withheld as implausible (empty if none)."""
    if not count:
        return ""
    return (
        f"<p class='warning'>{count} of {total} poses were withheld by the model as implausible (found: false): "
        "they count as misses in the accuracies and are left out of the error averages; the galleries show them "
        "marked (<code>withheld_predictions</code> in metrics.json).</p>"
    )


def _symmetry_note(box: Box) -> str:
    """The paragraph saying that errors are modulo the object's symmetries (empty without any)."""
    count = len(box.symmetries)
    if count == 1:
        return ""
    return (
        f"<p>Rotation errors and ADD are modulo the object's {count} symmetries (<code>object/symmetries</code>): "
        "each prediction is compared with the closest symmetric equivalent of the true pose.</p>"
    )


def write_report(root: str | Path, evaluated: Evaluation, image_paths) -> Path:
    """Write ``root``/report.html from an evaluation's outputs, errors and metrics.

    The summary and the grouped tables show cubepose's metrics and anything other callbacks put in metrics.json.
    """
    root = Path(root)
    errors = evaluated.errors
    metrics_path = root / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    metrics.update({**evaluated.unity, **evaluated.pose})
    rank = errors["add_cm"]
    order, captions = _ranked_images(evaluated)
    body = [
        f"<h1>cubepose evaluation: {html.escape(str(root))}</h1>",
        _summary(metrics),
        _non_finite_note(int(evaluated.pose["non_finite_predictions"]), len(rank)),
        _withheld_note(int(evaluated.pose.get("withheld_predictions", 0)), len(rank)),
        _symmetry_note(evaluated.box),
        *(f'<img class="plot" src="{figure}">' for figure in _figures(errors)),
    ]
    if evaluated.outputs.camera is not None and image_paths is not None:
        order = order[(np.asarray(image_paths, dtype=str) != "")[order]]  # images the outputs name
        middle = max(0, len(order) // 2 - SHOWN // 2)
        what = "missed and spurious instances, then ADD" if "image_index" in errors else "ADD"
        body.append(_gallery(f"{SHOWN} worst by {what}", order[::-1][:SHOWN], evaluated, image_paths, captions))
        body.append(
            _gallery(f"{SHOWN} median by {what}", order[middle : middle + SHOWN], evaluated, image_paths, captions)
        )
        body.append("<p>green: true pose; red: predicted pose</p>")
    body.append(_all_metrics(metrics))
    style = (
        "body{font-family:sans-serif;margin:2em} table{border-collapse:collapse;margin:1em 0} td,th{border:1px solid"
        " #ccc;padding:2px 8px} caption{font-weight:bold;text-align:left} .headline{font-size:1.2em}"
        " .summary{display:flex;flex-wrap:wrap;gap:0 2em} .gallery{display:flex;flex-wrap:wrap} figure{margin:4px}"
        " .plot{max-width:100%} .warning{color:#a40}"
    )
    page = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>cubepose report</title><style>{style}</style>"
    page += f"</head><body>{''.join(body)}</body></html>\n"
    path = root / REPORT_FILE
    atomic_write_text(path, page)
    logger.info("report written to %s", path)
    return path
