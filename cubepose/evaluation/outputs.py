"""An evaluation's per-image outputs as one typed record: built from predictions and labels by edflow's eval_op
and eval/accuracy.py, saved as the keys older runs wrote, read back by the evaluation, the report and
``cubepose report``. The only module that knows those keys.

Each image has P predicted and M true instance slots; a model of one instance per image is the case
P = M = 1, every slot found and present (unless the model withheld it). Saved keys: ``translation_pred``,
``quaternion_pred``, ``translation_true``, ``quaternion_true`` (and Unity's per-instance ``orientation_error``
and ``translation_mse``; ``found_pred`` from a model that may withhold a pose) for one instance; ``translations_pred``,
``quaternions_pred``, ``found_pred``, ``translations_true``, ``quaternions_true`` and ``instance_count`` for
several; ``loss_<name>``, the confidence keys, ``camera`` and ``image_size`` for both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from cubepose.errors import CubeposeError
from cubepose.evaluation.metrics import CONFIDENCE_KEYS, translation_squared_error, unity_quaternion_error
from cubepose.evaluation.overlay import only_shown

LOSS_PREFIX = "loss_"
# a dataset's labels the record takes as the truth: one instance, or several with their count
TRUTH_KEYS = ("translation", "quaternion", "translations", "quaternions", "instance_count")


@dataclass(frozen=True)
class EvalOutputs:
    """Predicted and true poses per image (N, P, ...) and (N, M, ...), which slots count, and what goes with them."""

    translations_pred: np.ndarray  # (N, P, 3) metres
    quaternions_pred: np.ndarray  # (N, P, 4) x, y, z, w
    found: np.ndarray  # (N, P) bool: the slot holds a prediction
    translations_true: np.ndarray  # (N, M, 3)
    quaternions_true: np.ndarray  # (N, M, 4)
    present: np.ndarray  # (N, M) bool: the slot holds a true instance
    several: bool  # the model finds every instance (data/max_instances above 1): predictions are matched
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # CONFIDENCE_KEYS present, each (N, P)
    losses: dict[str, np.ndarray] = field(default_factory=dict)  # per image (N,)
    camera: np.ndarray | None = None  # (N, 4) fx, fy, cx, cy of the network input
    image_size: np.ndarray | None = None  # (N,) side of the network input
    withholds: bool = False  # one instance, from a model that may withhold a pose (network/type zoom)

    @classmethod
    def of(
        cls,
        predictions: Mapping[str, np.ndarray],
        truth: Mapping[str, np.ndarray],
        losses: Mapping[str, np.ndarray] | None = None,
        camera: np.ndarray | None = None,
        image_size: int | None = None,
    ) -> EvalOutputs:
        """From a model's poses (``translation``, ``quaternion``, with several instances ``found``, each (N, P, ...),
        and any confidence keys) and the dataset's labels (``translation``, ``quaternion``, or with several
        instances ``translations``, ``quaternions`` and ``instance_count``)."""
        several = "translations" in truth
        if several:
            t_true, q_true = np.asarray(truth["translations"]), np.asarray(truth["quaternions"])
            present = np.arange(t_true.shape[1]) < np.asarray(truth["instance_count"]).reshape(-1, 1)
            t_pred, q_pred = np.asarray(predictions["translation"]), np.asarray(predictions["quaternion"])
            found = np.asarray(predictions["found"]) > 0.5
        else:
            t_true, q_true = np.asarray(truth["translation"])[:, None], np.asarray(truth["quaternion"])[:, None]
            present = np.ones(t_true.shape[:2], bool)
            t_pred = np.asarray(predictions["translation"])[:, None]
            q_pred = np.asarray(predictions["quaternion"])[:, None]
            found = np.ones(t_pred.shape[:2], bool)
            if "found" in predictions:  # a model that withholds implausible poses (network/type zoom)
                found = np.asarray(predictions["found"]).reshape(-1, 1) > 0.5
        count, slots = found.shape
        scores = {
            key: np.asarray(predictions[key]).reshape(count, slots) for key in CONFIDENCE_KEYS if key in predictions
        }
        sizes = None if image_size is None else np.full(count, image_size)
        withholds = not several and "found" in predictions
        return cls(
            t_pred,
            q_pred,
            found,
            t_true,
            q_true,
            present,
            several,
            scores,
            dict(losses or {}),
            camera,
            sizes,
            withholds,
        )

    @classmethod
    def from_labels(cls, labels: Mapping[str, np.ndarray]) -> EvalOutputs:
        """The record of saved outputs (edflow's ``model_outputs`` labels, or the same keys in a dict)."""
        labels = {key: np.asarray(value) for key, value in labels.items()}
        several = "translations_pred" in labels
        if several:
            predictions = {
                "translation": labels["translations_pred"],
                "quaternion": labels["quaternions_pred"],
                "found": labels["found_pred"],
            }
            truth = {
                "translations": labels["translations_true"],
                "quaternions": labels["quaternions_true"],
                "instance_count": labels["instance_count"],
            }
        elif "quaternion_pred" in labels:
            predictions = {"translation": labels["translation_pred"], "quaternion": labels["quaternion_pred"]}
            if "found_pred" in labels:
                predictions["found"] = labels["found_pred"]
            truth = {"translation": labels["translation_true"], "quaternion": labels["quaternion_true"]}
        else:
            raise CubeposeError("these model outputs hold no quaternion_pred; evaluate the checkpoint again")
        predictions.update({key: labels[key] for key in CONFIDENCE_KEYS if key in labels})
        losses = {key[len(LOSS_PREFIX) :]: labels[key] for key in labels if key.startswith(LOSS_PREFIX)}
        outputs = cls.of(predictions, truth, losses, labels.get("camera"))
        if "image_size" in labels:
            return outputs.with_image_size(labels["image_size"].reshape(-1))
        return outputs

    def with_image_size(self, sizes: np.ndarray) -> EvalOutputs:
        """The same outputs with the network input's side per image (outputs of older evaluations lack it)."""
        return EvalOutputs(**{**self.__dict__, "image_size": np.asarray(sizes).reshape(-1)})

    def labels(self, symmetries: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The saved keys (float32, batch first), Unity's per-instance errors modulo ``symmetries`` included."""
        if self.several:
            labels = {
                "translations_pred": self.translations_pred,
                "quaternions_pred": self.quaternions_pred,
                "found_pred": self.found,
                "translations_true": self.translations_true,
                "quaternions_true": self.quaternions_true,
                "instance_count": self.present.sum(axis=1),
                **self.scores,
            }
        else:
            t_pred, q_pred, t_true, q_true = self.one_per_image()
            labels = {
                "translation_pred": t_pred,
                "translation_true": t_true,
                "quaternion_true": q_true,
                "quaternion_pred": q_pred,
                "orientation_error": unity_quaternion_error(q_pred, q_true, symmetries),
                "translation_mse": translation_squared_error(t_pred, t_true),
                **{key: values[:, 0] for key, values in self.scores.items()},
            }
            if self.withholds or not self.found.all():  # every batch of such a model saves the same keys
                labels["found_pred"] = self.found[:, 0]
        labels.update({f"{LOSS_PREFIX}{name}": values for name, values in self.losses.items()})
        if self.camera is not None:
            labels["camera"] = self.camera
        if self.image_size is not None:
            labels["image_size"] = self.image_size[:, None]
        return {key: np.asarray(value, np.float32) for key, value in labels.items()}

    def __len__(self) -> int:
        return len(self.found)

    def one_per_image(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Predicted and true translation (N, 3) and quaternion (N, 4) of the first slot: a one-instance model's."""
        first = (self.translations_pred, self.quaternions_pred, self.translations_true, self.quaternions_true)
        return tuple(values[:, 0] for values in first)

    def drawn(self, indices: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """The true and predicted poses of images ``indices`` to draw, (N, slots, 3) and (N, slots, 4) each, with
        empty slots (not present, not found) put where no drawing shows them."""
        true = (only_shown(self.translations_true[indices], self.present[indices]), self.quaternions_true[indices])
        predicted = (only_shown(self.translations_pred[indices], self.found[indices]), self.quaternions_pred[indices])
        return true, predicted
