"""Pose prediction outside edflow: load a checkpoint once, then predict images a robot sends.

``PosePredictor`` follows the model-adapter pattern (``load``, ``save``, ``prepare_item``,
``predict_items``, ``predict``): a platform integration subclasses it and overrides
``prepare_item`` for its own input type; batching and the model call stay here.

A pose is never NaN or inf in disguise: outputs are checked per image, so a broken model (e.g.
training diverged) yields images marked invalid, not identity rotations.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cubepose.data.images import network_inputs, open_image, resize_rgb
from cubepose.errors import CheckpointError, CubeposeError
from cubepose.evaluation.metrics import CONFIDENCE_KEYS
from cubepose.geometry.camera import Camera
from cubepose.geometry.projection import resize_intrinsics
from cubepose.inference.camera_input import CameraLike, given_camera
from cubepose.inference.training_camera import TOLERANCE, camera_errors, describe_training_camera, size_errors
from cubepose.models import pose_network
from cubepose.storage import fetch
from cubepose.training.checkpoints import load_weights, read_checkpoint, save_checkpoint
from cubepose.training.devices import resolve_device

logger = logging.getLogger(__name__)

ImageLike = str | os.PathLike | np.ndarray | Image.Image

NON_FINITE = (
    "the model's output for this image is not finite (NaN or inf), so it has no pose: the checkpoint's "
    "weights are broken (e.g. training diverged or the file was damaged); use an earlier checkpoint"
)
DISTORTION_IGNORED = (
    "the camera's lens distortion is ignored: this regression model predicts the pose from the image alone and was "
    "trained on undistorted images; rectify the images first, or use a keypoint or zoom-in model, which undistorts "
    "its keypoints"
)
STATUS_KEYS = ("valid", "error")  # per-image status that predict_items adds next to the pose arrays
UNKNOWN_SIZE = (
    "its original size is unknown (prepare_item did not go through PosePredictor.prepare_item), so its camera "
    "cannot be checked; resize it with super().prepare_item, or predict without camera="
)


class PreparedImage(np.ndarray):
    """What ``prepare_item`` returns: the uint8 RGB image at the network size, remembering the size (width,
    height) it had before (``original_size``), which the camera check scales the given camera from. Views of it
    (a flipped channel order, say) keep it; an array made some other way has no known original size."""

    original_size: tuple[int, int] | None

    def __new__(cls, image: np.ndarray, original_size: tuple[int, int] | None) -> PreparedImage:
        prepared = np.asarray(image).view(cls)
        prepared.original_size = original_size
        return prepared

    def __array_finalize__(self, source: np.ndarray | None) -> None:
        self.original_size = getattr(source, "original_size", None)


@dataclass
class _Item:
    """One input on its way through ``predict_items``: how errors name it, its prepared image and original
    size (width, height), or why it has no pose."""

    name: str
    image: np.ndarray | None = None
    size: tuple[int, int] | None = None
    error: CubeposeError | None = None
    camera: np.ndarray | None = None  # (4,) its camera in network-input pixels, for a model that solves with it


class PosePredictor:
    """A trained pose network with the training preprocessing: images in, translation and quaternion out (and a
    keypoint network's confidence, from its PnP solve with the images' camera)."""

    def __init__(
        self,
        model: torch.nn.Module,
        config: dict,
        device: torch.device | str = "cpu",
        batch_size: int | None = None,
        global_step: int = 0,
        training_camera: dict | None = None,
        camera_tolerance: float = TOLERANCE,
    ) -> None:
        """``training_camera``: the checkpoint's ``camera`` record (cubepose.inference.training_camera); None: unknown,
        so given cameras are not checked. ``camera_tolerance``: the largest focal-length difference (relative)
        and principal-point offset (share of the side) accepted."""
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.config = config
        self.image_size = config["network"]["image_size"]
        self.batch_size = batch_size or config["test_batch_size"]
        self.global_step = global_step
        self.training_camera = training_camera
        self.camera_tolerance = camera_tolerance
        self._warned_distortion = False  # a regression model warns once that it cannot correct a lens distortion

    # -- load / save ---------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        checkpoint: str | os.PathLike,
        device: torch.device | str = "cpu",
        *,
        sha256: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        batch_size: int | None = None,
    ) -> PosePredictor:
        """Build the network a checkpoint (path, gs://, s3:// or http(s)://) was trained with and load its weights.

        ``device`` is checked first (ConfigError for an unknown name or a GPU this machine lacks),
        so a device problem is never reported as a problem of the checkpoint.
        """
        device = resolve_device(device)
        state = read_checkpoint(fetch(checkpoint, cache_dir, sha256), device)
        config = copy.deepcopy(state.get("config") or {})
        if not (isinstance(config, dict) and isinstance(config.get("network"), dict)):
            raise CheckpointError(f"{checkpoint} records no config; it was not written by cubepose's training")
        config["network"]["pretrained"] = None  # the checkpoint holds every weight
        model = pose_network(config)  # validates it
        load_weights(model, state, checkpoint, "the network its own config describes")
        camera = state.get("camera")
        logger.info(
            "loaded %s (step %s, %s; training camera %s)",
            checkpoint,
            state.get("global_step"),
            _network_name(config["network"]),
            describe_training_camera(camera),
        )
        if camera is None:
            logger.warning(
                "%s records no training camera (saved before cubepose recorded it): given cameras are not checked, "
                "and poses are in the frame of whatever camera it was trained with",
                checkpoint,
            )
        return cls(model, config, device, batch_size, int(state.get("global_step") or 0), camera)

    def save(self, path: str | os.PathLike) -> None:
        """Write the model and its config as a cubepose checkpoint that ``load`` reads back."""
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        save_checkpoint(
            path, model=state, config=self.config, global_step=self.global_step, camera=self.training_camera
        )

    # -- the adapter hooks ---------------------------------------------------------------

    def prepare_item(self, item: ImageLike) -> np.ndarray:
        """One image (path, uint8 RGB/gray/RGBA array or PIL image, any size) -> uint8 RGB HWC at the network size.

        Resized exactly as the training data; the scaling to [-1, 1] happens batched in ``predict_batch``.
        A subclass calls this for its decoded image and returns what it gets (or a view of it), so that the
        original size is known to the camera check (a PreparedImage).
        """
        if isinstance(item, Image.Image):
            return self._resized(item)
        if isinstance(item, np.ndarray):
            if item.dtype == np.uint8 and item.shape == (self.image_size, self.image_size, 3):
                return PreparedImage(item, (self.image_size, self.image_size))  # already the network input
            return self._resized(_array_image(item))
        if isinstance(item, (str, os.PathLike)):
            try:
                with open_image(item) as image:  # an oversized image: a CubeposeError naming it
                    return self._resized(image)
            except FileNotFoundError:
                raise CubeposeError(f"no image at {item}; give the path of a PNG or JPEG file") from None
            except (OSError, UnidentifiedImageError, SyntaxError) as err:
                raise CubeposeError(f"cannot read image {item} ({err}); give a PNG or JPEG file") from None
        raise CubeposeError(f"cannot predict a {type(item).__name__}; give a path, a numpy array or a PIL image")

    def _resized(self, image: Image.Image) -> PreparedImage:
        """``image`` at the network size; its original size is kept for the camera check."""
        return PreparedImage(resize_rgb(image, self.image_size), image.size)

    @property
    def takes_camera(self) -> bool:
        """Whether the model solves its poses with the images' camera (a keypoint model), rather than
        predicting them in its training camera's frame (a regression model, whose camera is checked)."""
        return bool(getattr(self.model, "takes_camera", False))

    def default_camera(self) -> np.ndarray:
        """(4,) the camera a keypoint model solves with when none is given: the training camera (network input)."""
        if self.training_camera is None:
            raise CubeposeError(
                "this keypoint model's checkpoint records no training camera, so the images' camera must be given: "
                "camera= (Python) or --intrinsics FX FY CX CY / --camera FILE (cubepose predict)"
            )
        return np.asarray(self.training_camera["intrinsics"], np.float64)

    @torch.inference_mode()
    def predict_batch(self, batch: np.ndarray, cameras: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Prepared images (B, S, S, 3) uint8 -> ``translation`` (B, 3), ``quaternion`` (B, 4) x, y, z, w
        and ``valid`` (B,) bool; a keypoint model adds ``confidence`` (B,) in [0, 1], ``reprojection_error`` (B,)
        in pixels, ``keypoints`` (B, 9, 2) and their ``scores`` (B, 9), solved with ``cameras`` (B, 4) in
        network-input pixels (default: the training camera). A model of several instances gives each a slot
        axis P after B and adds ``found`` (B, P), 1 where a slot holds an instance (``instance_records``).

        ``valid`` is False where the network gave a NaN or inf for that image; those rows are NaN
        throughout (normalising a non-finite raw rotation keeps it non-finite, never the identity).
        Scaled to [-1, 1] on the device in float32, the same arithmetic as the training data's
        ``to_network_range``; the channels-last layout is kept (faster convolutions on CPU).
        """
        images = network_inputs(torch.from_numpy(batch).to(self.device))
        camera = None
        if self.takes_camera:
            cameras = np.broadcast_to(self.default_camera(), (len(batch), 4)) if cameras is None else cameras
            camera = torch.as_tensor(np.asarray(cameras, np.float32), device=self.device)
        return _finite_rows(self.model.poses({k: v.float() for k, v in self.model(images).items()}, camera))

    @property
    def follows(self) -> bool:
        """Whether the model can follow an object from its previous pose (the zoom-in model's stage 2 alone)."""
        return hasattr(self.model, "follow")

    def frame_camera(self, camera: Camera | None, size: tuple[int, int], name: str) -> tuple[np.ndarray, np.ndarray]:
        """For a stream of ``size`` (width, height) frames named ``name``: the camera ``predict_batch`` and ``follow``
        solve with (network-input pixels) and the same in the frames' pixels, (4 or 12,) each; ``camera`` None:
        the training camera. A camera stating another image size is refused."""
        if camera is None:
            network = self.default_camera()
            side = (self.image_size, self.image_size)
            return network, resize_intrinsics(network, np.array(side, np.float64), size)
        error = size_errors(camera, np.array([size], np.float64), [name])[0]
        if error is not None:
            raise CubeposeError(error)
        scaled = resize_intrinsics(camera.parameters, np.array(size, np.float64), (self.image_size, self.image_size))
        return scaled, camera.parameters

    def check_follows(self) -> None:
        """Refuse, naming the fix, to track with a model that cannot follow an object (``follows``)."""
        if not self.follows:
            raise CubeposeError(
                f"tracking follows an object with the zoom-in model's second stage, and this checkpoint holds a "
                f"{_network_name(self.config['network'])}; leave out --track, or train network/type zoom"
            )

    @torch.inference_mode()
    def follow(
        self, image: np.ndarray, translations: np.ndarray, camera: np.ndarray, framing_depths: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Poses of the objects last seen at ``translations`` (T, 3) in one RGB uint8 ``image`` (H, W, 3), as taken
        (no resize to the network input: a crop needs none) or prepared, seen by ``camera`` (4 or 12,) in
        network-input pixels: one stage-2 crop around each, sized for an object at ``framing_depths`` (T,) metres
        (default: the translations' depths), as ``predict_batch``'s outputs (T, ...) with ``valid`` (T,); ``found``
        0 where the object was not found there again."""
        self.check_follows()
        count = len(translations)
        images = network_inputs(torch.tensor(np.asarray(image)[None], device=self.device)).expand(count, -1, -1, -1)
        cameras = torch.as_tensor(np.tile(np.asarray(camera, np.float32), (count, 1)), device=self.device)
        moved = torch.as_tensor(np.asarray(translations, np.float32), device=self.device)
        framing = (
            None
            if framing_depths is None
            else torch.as_tensor(np.asarray(framing_depths, np.float32), device=self.device)
        )
        return _finite_rows(self.model.follow(images, moved, cameras, framing))

    def predict_items(
        self, items: Iterable[ImageLike], *, keep_going: bool = False, camera: CameraLike | None = None
    ) -> Iterator[dict[str, Any]]:
        """Predict ``items`` in batches of ``batch_size``; yields one dict per batch, in order.

        Each dict holds the pose arrays, ``valid`` (bool per image) and ``error`` (per image: None,
        or why that image has no pose; its rows are NaN). A non-finite model output never raises
        here, it is reported through ``valid`` and ``error``. An item ``prepare_item`` refuses raises
        its CubeposeError, unless ``keep_going``: then it is reported the same way and the rest
        are still predicted, the readable ones batched together as usual.

        ``camera``: the intrinsics of the camera that took the images, (fx, fy, cx, cy) in pixels of the
        images as given, a mapping of those and optionally ``width``, ``height``, or a Camera (geometry.camera).
        Scaled to the network input per image size. A keypoint model solves each pose with it (None: the training
        camera); for a regression model it must match the checkpoint's training camera within
        ``camera_tolerance``, and an image it does not match is refused like an unreadable one (None: not checked).
        """
        given = None if camera is None else given_camera(camera)  # refused before any image is read
        pending: list[_Item] = []
        readable = 0
        for index, item in enumerate(items):
            pending.append(self._prepared(item, index, keep_going))
            readable += pending[-1].error is None
            if readable == self.batch_size:
                yield self._predict_pending(self._camera_checked(pending, given, keep_going))
                pending, readable = [], 0
        if pending:
            yield self._predict_pending(self._camera_checked(pending, given, keep_going))

    def predict(self, images: Iterable[ImageLike], camera: CameraLike | None = None) -> dict[str, np.ndarray]:
        """Poses of ``images``: ``translation`` (N, 3) in metres, ``quaternion`` (N, 4) x, y, z, w (w >= 0)
        (a model of several instances: (N, P, 3), (N, P, 4) and ``found`` (N, P), as ``predict_batch``).

        Every row returned is a finite pose. An image that cannot be read, or whose ``camera`` (see
        ``predict_items``) is not the training camera, raises its CubeposeError; if the network gives a
        non-finite output (NaN or inf) for any image, a CubeposeError names those images rather than
        return a made-up pose. To keep the good poses of a mixed batch, use
        ``predict_items(images, keep_going=True)`` and its ``valid`` / ``error`` entries.
        For a symmetric object (``object/symmetries``) the quaternion is one of its equivalent orientations.
        """
        images = list(images)
        parts = list(self.predict_items(images, camera=camera))
        if not parts:
            raise CubeposeError("no images to predict")
        poses = {key: np.concatenate([part[key] for part in parts]) for key in parts[0] if key not in STATUS_KEYS}
        invalid = np.flatnonzero(~np.concatenate([part["valid"] for part in parts]))
        if len(invalid):
            names = ", ".join(_describe(images[i], i) for i in invalid[:5])
            more = f" and {len(invalid) - 5} more" if len(invalid) > 5 else ""
            raise CubeposeError(f"no pose for {len(invalid)} of {len(images)} images ({names}{more}): {NON_FINITE}")
        return poses

    def _prepared(self, item: ImageLike, index: int, keep_going: bool) -> _Item:
        """``item`` through ``prepare_item``, with its name and original size; a refusal is kept if ``keep_going``."""
        try:
            image = self.prepare_item(item)
        except CubeposeError as err:
            if not keep_going:
                raise
            return _Item(_describe(item, index), error=err)
        return _Item(_describe(item, index), image=np.asarray(image), size=getattr(image, "original_size", None))

    def _camera_checked(self, pending: list[_Item], given: Camera | None, keep_going: bool) -> list[_Item]:
        """``pending`` with each image whose camera is not the training camera refused (raised unless ``keep_going``).

        One vectorised check per batch; without a given or a recorded camera nothing is checked.
        """
        if given is None or (self.training_camera is None and not self.takes_camera):
            return pending
        readable = [item for item in pending if item.error is None]
        known = [item for item in readable if item.size is not None]
        sizes = np.array([i.size for i in known], np.float64).reshape(-1, 2)
        if self.takes_camera:  # any camera works: scaled to the network input, it is the one the pose is solved with
            scaled = resize_intrinsics(given.parameters, sizes, (self.image_size, self.image_size))
            for item, camera in zip(known, scaled, strict=True):
                item.camera = camera
            checked = iter(size_errors(given, sizes, [i.name for i in known]))
        else:
            if given.distortion is not None and not self._warned_distortion:
                logger.warning(DISTORTION_IGNORED)
                self._warned_distortion = True
            checked = iter(
                camera_errors(given, sizes, [i.name for i in known], self.training_camera, self.camera_tolerance)
            )
        for item in readable:
            message = next(checked) if item.size is not None else f"{item.name}: {UNKNOWN_SIZE}"
            if message is None:
                continue
            if not keep_going:
                raise CubeposeError(message)
            item.image, item.error = None, CubeposeError(message)
        return pending

    def _batch(self, batch: np.ndarray, cameras: np.ndarray | None) -> dict[str, np.ndarray]:
        """``predict_batch``, given cameras only when there are any: an adapter that overrides the hook as
        ``predict_batch(batch)`` keeps working."""
        return self.predict_batch(batch) if cameras is None else self.predict_batch(batch, cameras)

    def _predict_pending(self, pending: list[_Item]) -> dict[str, Any]:
        """One batch for ``predict_items``: the prepared images in one forward pass, refused ones as NaN rows."""
        readable = [i for i, item in enumerate(pending) if item.error is None]
        cameras = None
        if self.takes_camera and readable and any(pending[i].camera is not None for i in readable):
            cameras = np.stack([pending[i].camera for i in readable])
        poses = self._batch(np.stack([pending[i].image for i in readable]), cameras) if readable else None
        shapes = self.model.pose_shapes()  # what every image gets, predicted or not
        out: dict[str, Any] = {
            key: np.full((len(pending), *shape), np.nan, np.float32) for key, shape in shapes.items()
        }
        out["valid"] = np.zeros(len(pending), bool)
        out["error"] = [None if item.error is None else str(item.error) for item in pending]
        if poses is not None:
            for key, value in poses.items():
                out[key][readable] = value
            for index, valid in zip(readable, poses["valid"], strict=True):
                out["error"][index] = None if valid else NON_FINITE
        return out


def _network_name(network: dict) -> str:
    """How the load log names a network: the keypoint network, or the regression's backbone."""
    names = {"keypoints": "keypoint network", "zoom": "zoom-in network"}
    return names.get(network["type"], f"{network['backbone']} regression")


def _array_image(array: np.ndarray) -> Image.Image:
    """A uint8 HxW, HxWx3 (RGB) or HxWx4 (RGBA) array as a PIL image."""
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise CubeposeError(
            f"an image array must be uint8 of shape HxW, HxWx3 (RGB) or HxWx4, got {array.dtype} {array.shape}; "
            "convert with (image * 255).astype(np.uint8) for floats in [0, 1], or image[..., ::-1] for BGR"
        )
    return Image.fromarray(array)


def _finite_rows(poses: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The model's pose tensors (B, ...) as float32 arrays plus ``valid`` (B,): False, and the row NaN throughout,
    where any output of that row is NaN or inf (normalising a non-finite rotation never gives the identity)."""
    outputs = {key: value.float().cpu().numpy() for key, value in poses.items()}
    count = len(next(iter(outputs.values())))
    valid = np.ones(count, dtype=bool)
    for value in outputs.values():
        valid &= np.isfinite(value.reshape(count, -1)).all(axis=1)
    outputs = {key: np.where(_rows(valid, value), value, np.float32(np.nan)) for key, value in outputs.items()}
    return {**outputs, "valid": valid}


def _rows(mask: np.ndarray, value: np.ndarray) -> np.ndarray:
    """``mask`` (B,) shaped to broadcast over the rows of ``value`` (B, ...)."""
    return mask.reshape(-1, *([1] * (value.ndim - 1)))


def _describe(item: Any, index: int) -> str:
    """How an error names an input: its path, else its position."""
    return str(item) if isinstance(item, (str, os.PathLike)) else f"image {index}"


def as_json_record(name: str, poses: dict[str, Any], index: int) -> dict[str, Any]:
    """One image's result as plain JSON data: ``{"image", "poses"}`` with a list of the poses found
    (``instance_records``), or ``{"image", "error"}`` for an image without one (unreadable, or a non-finite model
    output)."""
    valid = poses.get("valid")
    if valid is not None and not valid[index]:
        errors = poses.get("error")
        return {"image": name, "error": (errors[index] if errors is not None else None) or NON_FINITE}
    return {"image": name, "poses": instance_records(poses, index)}


def instance_records(poses: dict[str, Any], index: int) -> list[dict[str, Any]]:
    """The poses of image ``index`` as ``{"translation", "quaternion"}`` dicts (a keypoint model adds
    ``confidence`` and ``reprojection_error``): one for a single-instance model (with ``found: false`` and a
    ``reason`` where the model withheld it), one per slot ``found`` for a model of several instances (none for an
    image without the object), strongest first."""
    translation = np.asarray(poses["translation"][index])
    slots = [()] if translation.ndim == 1 else [(slot,) for slot in np.flatnonzero(poses["found"][index] > 0.5)]
    records = []
    for slot in slots:
        record = {
            "translation": [float(v) for v in translation[slot]],
            "quaternion": [float(v) for v in np.asarray(poses["quaternion"][index])[slot]],
        }
        for key in CONFIDENCE_KEYS:
            if key in poses:
                record[key] = float(np.asarray(poses[key][index])[slot])
        if translation.ndim == 1 and "found" in poses and float(poses["found"][index]) < 0.5:
            record.update(found=False, reason=_withheld_reason(poses, index))
        records.append(record)
    return records


def _withheld_reason(poses: dict[str, Any], index: int) -> str:
    """Why a one-instance model withheld image ``index``'s pose (``found`` 0): what a robot must not act on."""
    depth, solved = float(poses["depth_from_size"][index]), float(poses["translation"][index][2])
    spread = float(poses["reprojection_error"][index])
    return (
        f"withheld: the solve cannot be right (depth {solved:.3g} m against the {depth:.3g} m the object's apparent "
        f"size gives; keypoints {spread:.2g} crop px from the solved pose's projection; or the object or its "
        "keypoints were not clearly found); do not act on this pose"
    )
