"""edflow's eval callbacks: dataset metrics, errors, BOP results and the report from the saved outputs.

A callback is called as ``cb(root, data_in, data_out, config)`` after an evaluation epoch, and by
``edeval`` over saved outputs; it never re-runs the model. The formulas are cubepose.evaluation's;
these functions only compute the Evaluation once per outputs and write what it says.
"""

from __future__ import annotations

from pathlib import Path

from cubepose.engine.errors import install_error_handler
from cubepose.evaluation.evaluator import (
    Evaluation,
    image_geometry,
    write_errors,
    write_metrics,
    write_results,
)
from cubepose.evaluation.html_report import write_report
from cubepose.evaluation.outputs import EvalOutputs
from cubepose.geometry.object import Box

install_error_handler()  # edeval imports these callbacks: a CubeposeError there prints one line too


def _step_of(root: Path) -> int:
    """edflow names the eval folder of each checkpoint after its global step."""
    return int(root.name) if root.name.isdigit() else 0


CACHE_ATTRIBUTE = "_cubepose_evaluation"  # where data_out keeps its Evaluation: (root, Evaluation)


def evaluation_of(root: str, data_out, config: dict, data_in=None) -> Evaluation:
    """The Evaluation of ``data_out`` (with ``data_in``'s image geometry when given), computed by whichever
    callback asks first, so any order works.

    It is kept on ``data_out`` itself, so it lives exactly as long as the outputs it describes.
    """
    cached = getattr(data_out, CACHE_ATTRIBUTE, None)
    if cached is not None and cached[0] == str(root):
        return cached[1]
    outputs = EvalOutputs.from_labels(data_out.labels)
    evaluated = Evaluation.of(outputs, Box.from_config(config), image_geometry(outputs, data_in))
    try:
        setattr(data_out, CACHE_ATTRIBUTE, (str(root), evaluated))
    except AttributeError:  # an object without attributes: computed again by the next callback
        pass
    return evaluated


def unity_metrics(root: str, data_in, data_out, config: dict, **kwargs) -> dict:
    """Unity's translation MSE and average quaternion error -> metrics.json and TensorBoard."""
    metrics = evaluation_of(root, data_out, config, data_in).unity
    write_metrics(Path(root), metrics)
    if config.get("test_mode", False):
        # In training runs edflow logs the returned scalars itself; in evaluation it does not.
        log_to_tensorboard(Path(root), metrics)
    return {"scalars": {k: v for k, v in metrics.items() if k != "instances"}}


def pose_metrics(root: str, data_in, data_out, config: dict, **kwargs) -> dict:
    """Errors in cm and degrees and ADD (modulo the object's symmetries), accuracies -> metrics.json, errors.csv
    and TensorBoard."""
    evaluated = evaluation_of(root, data_out, config, data_in)
    write_metrics(Path(root), evaluated.pose)
    image_paths = getattr(data_in, "labels", {}).get("image_path")
    write_errors(Path(root), evaluated.errors, image_paths)
    write_results(Path(root), evaluated.outputs, image_paths, (config.get("data") or {}).get("obj_id") or 1)
    if config.get("test_mode", False):
        log_to_tensorboard(Path(root), evaluated.pose)
    return {"scalars": evaluated.pose}


def report(root: str, data_in, data_out, config: dict, **kwargs) -> dict:
    """report.html with metrics, plots and pose overlays; needs no other callback to have run."""
    evaluated = evaluation_of(root, data_out, config, data_in)
    write_report(Path(root), evaluated, getattr(data_in, "labels", {}).get("image_path"))
    return {"scalars": {}}


def log_to_tensorboard(root: Path, metrics: dict) -> None:
    """Write the scalars as TensorBoard events into the eval folder."""
    from tensorboardX import SummaryWriter

    with SummaryWriter(str(root)) as writer:
        for name, value in metrics.items():
            writer.add_scalar(f"eval/{name}", value, global_step=_step_of(root))
