"""Export a trained model for deployment: TorchScript or ONNX, plus a JSON note of its contract.

The exported graph takes the prepared input (N, 3, S, S) float32: RGB resized bilinearly to S x S,
pixel / 127.5 - 1, channels first. A regression model returns ``translation`` (N, 3) in metres and
``quaternion`` (N, 4) x, y, z, w with w >= 0, right only for images from its training camera. A keypoint
model returns ``keypoints`` (N, 9, 2) in input pixels and their ``scores`` (N, 9); the caller solves the
pose with its own camera (PnP of the note's ``object_points``, as ``cubepose.models.codecs.keypoints.solve_pnp`` does).
The note beside the file says the same, with S and the training camera. What the model computes and declares
comes from its ``export_spec()`` (cubepose.models.export_spec); this module adds only the export's own parts.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from torch import nn

from cubepose.errors import CubeposeError
from cubepose.inference.predictor import PosePredictor
from cubepose.io.atomic import atomic_open, atomic_write_text
from cubepose.io.temporary import temporary_beside
from cubepose.models.export_spec import export_spec_of

logger = logging.getLogger(__name__)

FORMATS = ("torchscript", "onnx")
EXAMPLE_BATCH = 2  # traced with a batch of 2 so that the batch axis stays free


def export_model(predictor: PosePredictor, out: str | os.PathLike, fmt: str) -> Path:
    """Write ``predictor``'s model to ``out`` as ``fmt`` (atomically) and a JSON contract to ``out``.json."""
    if fmt not in FORMATS:
        raise CubeposeError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        example = out / ("model.onnx" if fmt == "onnx" else "model.pt")
        raise CubeposeError(f"the export's output {out} is a folder; give the file to write, e.g. {example}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file where a folder of the path should be, or no permission
        problem = err.strerror or err
        raise CubeposeError(f"cannot make the folder {out.parent} of {out} ({problem}); give another path") from None
    spec = export_spec_of(predictor.model.cpu())
    module = spec.module.eval()
    size = predictor.image_size
    example = torch.zeros(EXAMPLE_BATCH, 3, size, size)
    outputs = list(spec.outputs)
    with torch.no_grad():
        if fmt == "torchscript":
            traced = torch.jit.trace(module, example)
            with atomic_open(out, "wb") as handle:
                torch.jit.save(traced, handle)
        else:
            _export_onnx(module, example, outputs, out)
    contract = {
        "format": fmt,
        "input": {"name": "images", "shape": ["N", 3, size, size], "dtype": "float32"},
        "preprocessing": f"RGB, bilinear resize to {size}x{size}, pixel / 127.5 - 1, channels first",
        "outputs": dict(spec.outputs),
        **spec.contract,
        "global_step": predictor.global_step,
        "network": predictor.config["network"],
        "camera": camera_contract(predictor.training_camera),
    }
    atomic_write_text(out.with_name(out.name + ".json"), json.dumps(contract, indent=2) + "\n")
    logger.info("exported %s model to %s", fmt, out)
    return out


def camera_contract(recorded: dict | None) -> dict | None:
    """The training camera for the contract note: the model's poses are only right for images from it."""
    if recorded is None:
        return None  # a checkpoint saved before cubepose recorded it
    side = recorded["image_size"]
    return {
        **recorded,
        "units": f"fx, fy, cx, cy in pixels of the {side}x{side} input; an image of W x H px from this camera has "
        f"fx * W / {side}, fy * H / {side}, cx * W / {side}, cy * H / {side}",
    }


def _export_onnx(module: nn.Module, example: torch.Tensor, outputs: list[str], out: Path) -> None:
    """torch.onnx's exporter (torch.export based) with a free batch axis, saved via a temporary file."""
    try:
        import onnxscript  # noqa: F401  # the exporter needs it; fail with the fix, not deep inside torch
    except ImportError:
        raise CubeposeError("ONNX export needs onnx and onnxscript: pip install 'cubepose[onnx]'") from None
    batch = torch.export.Dim("batch")
    program = torch.onnx.export(
        module,
        (example,),
        input_names=["images"],
        output_names=outputs,
        dynamic_shapes=({0: batch},),
        dynamo=True,
        verbose=False,
    )
    with temporary_beside(out) as temporary:
        program.save(str(temporary))
        os.replace(temporary, out)
