"""The edflow Iterator: inputs -> model -> criterion -> train_op / log_op / eval_op.

Loss and metric formulas live in cubepose.losses and cubepose.evaluation.metrics; this module only
wires them to edflow, the optimizer and checkpoints.

The guards of cubepose.training.guards are wired in here: a non-finite loss stops training before
its update (checked on the host copy of the losses that each step makes anyway, so no extra
device sync); no checkpoint is written from non-finite weights, not even by edflow's
save-on-exception; the last training step is always checkpointed, whatever ``ckpt_freq`` is.
Importing this module under edflow installs the handler that prints a CubeposeError as one
message (cubepose.engine.errors).
"""

from __future__ import annotations

import atexit
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edflow.hooks.util_hooks import ExpandHook
from edflow.iterators.template_iterator import TemplateIterator
from edflow.project_manager import ProjectManager

from cubepose.config import validate_config
from cubepose.data.images import as_uint8, to_network_range
from cubepose.engine.batches import seed_shuffling
from cubepose.engine.errors import install_error_handler
from cubepose.engine.hooks import CheckpointHook, ProgressHook
from cubepose.engine.run_code import copy_package_source
from cubepose.evaluation.metrics import CONFIDENCE_KEYS, unity_dataset_metrics
from cubepose.evaluation.outputs import EvalOutputs
from cubepose.evaluation.overlay import pose_overlays
from cubepose.geometry.object import Box
from cubepose.inference.training_camera import describe_training_camera, record_training_camera
from cubepose.io.temporary import remove_orphans
from cubepose.storage import Uploader, is_remote
from cubepose.training.checkpoints import load_checkpoint, save_checkpoint
from cubepose.training.distributed import flagged_ranks, from_rank, remove_folder, shared_run_folder
from cubepose.training.guards import (
    TrainingDivergedError,
    divergence_message,
    kept_checkpoint_sentence,
    non_finite_names,
    optimizer_tensors,
)
from cubepose.training.progress import TrainingProgress
from cubepose.training.seeding import seed_global_generators
from cubepose.training.step import NonFiniteLossError, StepResult, TrainingStep

logger = logging.getLogger(__name__)

LOG_IMAGES = 16  # inputs shown in the log_op image grids
LOG_POSE_SIZE = 128  # pose overlays are enlarged to about this side so the wireframes stay readable

# edflow imports this module (config key `iterator`) before it builds datasets, model and iterator,
# so a ConfigError or DatasetError from any of them prints as one line instead of a traceback.
install_error_handler()


def _pose_images(image: np.ndarray, camera: np.ndarray, outputs: EvalOutputs, box: Box) -> np.ndarray:
    """The first inputs enlarged to about 128 px with the true (green) and predicted (red) boxes, in [-1, 1]."""
    shown = np.arange(min(LOG_IMAGES, len(outputs)))
    true, predicted = outputs.drawn(shown)
    scale = max(1, LOG_POSE_SIZE // image.shape[1])
    canvas = pose_overlays(
        as_uint8(image[shown]),
        np.asarray(camera)[shown],
        true,
        predicted,
        scale,
        box=box,
    )
    return to_network_range(canvas)


def remove_interrupted_writes(directory: str) -> None:
    """Delete the temporary files a killed save left in a run's checkpoint folder, which this run writes alone."""
    remove_orphans(Path(directory), alone=True)


def run_uploader(settings: dict, run_name: str) -> Uploader:
    """An Uploader to ``<checkpoint/upload>/<run name>/``, drained before the process exits."""
    uploader = Uploader(f"{settings['upload'].rstrip('/')}/{run_name}", attempts=settings["upload_attempts"])
    atexit.register(drain_uploads, uploader)
    return uploader


def drain_uploads(uploader: Uploader) -> None:
    """At exit: wait for queued uploads. A failure or Ctrl-C here is one log line, not a traceback
    printed after the run's own error message; the local checkpoints are kept either way."""
    try:
        uploader.close()
    except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - nothing can be raised to anyone at exit
        logger.error("checkpoint uploads did not all finish (%s); the local checkpoints are kept", err)


class Iterator(TemplateIterator):
    """Trains and evaluates cubepose's pose networks (``network/type``) under edflow."""

    def __init__(self, config: dict, root: str, model: torch.nn.Module, *args: Any, **kwargs: Any) -> None:
        validate_config(config)
        super().__init__(config, root, model, *args, **kwargs)
        seed_global_generators(config["seed"])
        self.training_step = TrainingStep(model, config, num_steps=config.get("num_steps", 1))
        self.device = self.training_step.device
        self.network = model  # what checkpoints hold; self.model may be its torch.compile wrapper
        self.model = self.training_step.model
        self.optimizer, self.criterion = self.training_step.optimizer, self.training_step.criterion
        self.box = Box.from_config(config)  # the object: drawn in the logged pose images, its symmetries measured
        self.diverged_at: int | None = None  # the step whose loss was not finite; nothing is saved after it
        self.training_camera = None if config.get("test_mode", False) else self._training_camera()
        self._replace_checkpoint_hook()
        self.progress: TrainingProgress | None = None  # made when training starts, once the epoch length is known
        if getattr(self.evalhook, "cb_handler", None) is not None:  # training: validation metrics reach the progress
            self.evalhook.cb_handler = self._with_progress(self.evalhook.cb_handler)
        self.ranks = self.training_step.ranks
        self.own_folder: str | None = None  # another rank's edflow folder, removed once training starts
        if self.ranks.distributed:
            self._share_rank_zeros_run()
        if config["code_root"] is None and not ProjectManager.resumed:  # edflow copied no code: copy what runs
            copy_package_source(ProjectManager.code)
        self.uploader = None
        if not config.get("test_mode", False):
            remove_interrupted_writes(ProjectManager.checkpoints)
            if config["checkpoint"]["upload"]:
                self.uploader = run_uploader(config["checkpoint"], Path(ProjectManager.root).name)

    def _share_rank_zeros_run(self) -> None:
        """Under torchrun: every rank trains, rank 0 alone writes. The other ranks drop the folder their `edflow`
        made (rank 0's is the run; removed when training starts), their checkpoint, logging and evaluation hooks;
        the effective batch is logged once. The learning rate is not scaled with it (README: several GPUs and
        nodes)."""
        shared, self.own_folder = shared_run_folder(ProjectManager.root, ProjectManager.latest_eval, self.ranks)
        if not self.ranks.main:
            self.hooks = [hook for hook in self.hooks if isinstance(hook, ExpandHook)]  # train_op only
            self.epoch_hooks = []
            return
        batch, accumulation = self.config["batch_size"], self.config["accumulation_steps"]
        self.logger.info(
            "data-parallel training on %d ranks: batch %d per rank x %d ranks x %d accumulation steps = an effective "
            "batch of %d; each rank trains on its own %d examples of the split; optimizer/lr %g is used as "
            "configured; run folder %s",
            self.ranks.world,
            batch,
            self.ranks.world,
            accumulation,
            batch * self.ranks.world * accumulation,
            len(self.datasets["train"]),
            self.config["optimizer"]["lr"],
            shared,
        )

    def _training_camera(self) -> dict | None:
        """The train split's camera (network-input intrinsics), recorded in every checkpoint so that prediction
        can refuse images from another camera. Taken once from the dataset's labels: no images are read."""
        labels = getattr(self.datasets.get("train"), "labels", None) or {}
        if "camera" not in labels:
            return None
        camera = record_training_camera(labels["camera"], self.config["network"]["image_size"])
        self.logger.info("training camera (recorded in checkpoints): %s", describe_training_camera(camera))
        return camera

    def _replace_checkpoint_hook(self) -> None:
        """Swap edflow's LambdaCheckpointHook for CheckpointHook (same settings, same place in the hooks)."""
        edflows = self.ckpthook
        self.ckpthook = CheckpointHook(
            root_path=edflows.root,
            global_step_getter=self.get_global_step,
            global_step_setter=self.set_global_step,
            save=self.save,
            restore=self.restore,
            interval=edflows.interval,
            ckpt_zero=edflows.ckpt_zero,
            is_last_epoch=self._is_last_epoch,
            check_state=self.stop_if_weights_diverged,
        )
        self.hooks = [self.ckpthook if hook is edflows else hook for hook in self.hooks]

    def _is_last_epoch(self, epoch: int) -> bool:
        """Whether training ends after ``epoch``: num_steps reached or the last of num_epochs done."""
        return self.get_global_step() >= self.config.get("num_steps", math.inf) or epoch + 1 >= self.num_epochs

    def stop_if_weights_diverged(self) -> None:
        """Raise TrainingDivergedError if a weight is NaN or inf (one check over all parameters).

        Run at each epoch's end, before the evaluation: train_op checks the loss before each update,
        so only the epoch's very last update could leave NaN weights that nothing has seen yet.
        """
        bad = non_finite_names(self.network.state_dict())
        if bad:
            latest = self.ckpthook.latest()
            raise TrainingDivergedError(
                f"training stopped at global step {self.get_global_step()}: the weights are not finite "
                f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); the model diverged, most likely because "
                f"optimizer/lr {self.config['optimizer']['lr']:g} is too high: lower it or set "
                f"optimizer/clip_grad_norm. {kept_checkpoint_sentence(latest)}"
            )

    def iterate(self, batches: dict) -> None:
        """Seed each split's example order (``seed``), start the progress line when training, then let edflow
        iterate."""
        remove_folder(self.own_folder)  # edflow has written its configs there: this rank writes nothing more
        for offset, split in enumerate(sorted(batches)):
            seed_shuffling(batches[split], self.config["seed"] + offset)
        if not self.config.get("test_mode", False) and self.ranks.main:
            self._start_progress(len(batches["train"]))
        super().iterate(batches)

    # -- progress ----------------------------------------------------------------------------

    def _start_progress(self, batches_per_epoch: int) -> None:
        """The TrainingProgress of this run (edflow's epoch length and step limit) and its hook."""
        steps_per_epoch = min(batches_per_epoch, self.config.get("max_batches_per_epoch", batches_per_epoch))
        total = min(self.config.get("num_steps", math.inf), self.num_epochs * steps_per_epoch)
        self.progress = TrainingProgress(
            total_steps=int(total),
            steps_per_epoch=steps_per_epoch,
            images_per_step=self.config["batch_size"] * self.ranks.world,
            every=self.config["progress_freq"],
            validation_images=len(self.datasets["validation"]),
        )
        self.progress.start(self.get_global_step())
        self.hooks.append(ProgressHook(self.progress, self.get_global_step, self._say_progress))

    def _say_progress(self, line: str) -> None:
        """Log a progress line; its numbers go to TensorBoard as progress/<name>."""
        self.logger.info(line)
        writer = getattr(self, "tensorboard_writer", None)  # edflow's, when integrations/tensorboard/active
        if writer is not None and self.progress is not None:
            for name, value in self.progress.scalars().items():
                writer.add_scalar(f"progress/{name}", value, self.get_global_step())

    def _with_progress(self, handler: Callable) -> Callable:
        """edflow's eval-callback handler, then the validation's metrics into the progress line."""

        def handle(results: dict, paths: list[str]) -> None:
            handler(results=results, paths=paths)
            if self.progress is None:
                return
            metrics: dict[str, Any] = {}
            for path in paths:  # <split>/eval_op/<callback>: each callback's returned scalars
                answer = results
                for part in path.split("/"):
                    answer = answer.get(part, {}) if isinstance(answer, dict) else {}
                metrics.update(answer.get("scalars", {}) if isinstance(answer, dict) else {})
            self._say_progress(self.progress.evaluated(self.get_global_step(), metrics))

        return handle

    def initialize(self, checkpoint_path: str | None = None) -> None:
        if checkpoint_path is None and self.config.get("test_mode", False):
            self.logger.warning(
                "no checkpoint to evaluate: the model is untrained. Pass -p logs/<run> or -c <checkpoint>."
            )
        super().initialize(checkpoint_path)

    # -- checkpoints -------------------------------------------------------------------

    def save(self, checkpoint_path: str) -> bool:
        """Atomically write model, optimizer, step, the resolved config and the training camera; queue the upload.

        Refuses (logs and returns False) when the weights or the optimizer state hold a NaN or inf,
        or gave a non-finite loss (``diverged_at``): edflow saves on every exception, and a diverged
        run must keep its last good checkpoint as its latest.
        """
        if not self.ranks.main:  # rank 0 writes the run's checkpoints
            return False
        if self.diverged_at is not None:
            self.logger.warning(
                "not saving %s: these weights gave a non-finite loss at step %d", checkpoint_path, self.diverged_at
            )
            return False
        bad = non_finite_names({**self.network.state_dict(), **optimizer_tensors(self.optimizer)})
        if bad:
            self.logger.warning(
                "not saving %s: %s not finite; the last good checkpoint stays the latest",
                checkpoint_path,
                ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "") + (" is" if len(bad) == 1 else " are"),
            )
            return False
        save_checkpoint(
            checkpoint_path,
            model=self.network.state_dict(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.training_step.scheduler.state_dict(),
            global_step=self.get_global_step(),
            config=json.loads(json.dumps(self.config, default=str)),
            camera=self.training_camera,
        )
        if self.uploader is not None:
            self.uploader.submit(checkpoint_path)
        return True

    def restore(self, checkpoint_path: str) -> None:
        """Load model and (for training) optimizer state from a path, gs://, s3:// or http(s)://.

        edflow restores the global step from the name (model-<step>.ckpt). A remote checkpoint
        is checked against ``checkpoint/sha256`` when it is set.
        """
        pin = self.config["checkpoint"]["sha256"] if is_remote(checkpoint_path) else None
        state = load_checkpoint(
            checkpoint_path,
            self.network,
            device=self.device,
            config=self.config,
            cache_dir=self.config["data"]["cache_dir"],
            sha256=pin,
        )
        if not self.config.get("test_mode", False) and "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
            if "scheduler" in state:
                self.training_step.scheduler.load_state_dict(state["scheduler"])
        self.training_step.accumulator.reset()

    # -- the step --------------------------------------------------------------------------

    def step_op(
        self, model: torch.nn.Module, image: np.ndarray, translation: np.ndarray, quaternion: np.ndarray, **kwargs: Any
    ) -> dict[str, Callable]:
        """edflow's ops for one batch; ``model`` is edflow's handle on ``self.model``, which the step drives."""
        inputs = self.training_step.inputs(image)
        targets = self.training_step.targets({"translation": translation, "quaternion": quaternion, **kwargs})
        trained: list[StepResult] = []
        step = self.get_global_step()  # for loss-weight ramps

        def evaluate() -> StepResult:
            """Predictions and per-instance losses: from train_op of this step, else a no-grad pass."""
            return trained[0] if trained else self.training_step.evaluate(inputs, targets, step)

        def train_op() -> None:
            try:
                trained.append(self.training_step.train(inputs, targets, step))
            except NonFiniteLossError as err:
                self._stop_diverged(step, err.result.losses, translation, quaternion, kwargs.get("index_"), err.ranks)

        def log_op() -> dict:
            result = evaluate()
            losses = result.losses
            predictions = self.training_step.poses(result.predictions, kwargs.get("camera"))
            scalars = {f"loss_{name}": float(values.mean()) for name, values in losses.items()}
            scalars.update({f"weight_{name}": weight for name, weight in self.criterion.weights(step).items()})
            scalars["learning_rate"] = self.training_step.learning_rate()
            scalars.update({f"mean_{k}": float(predictions[k].mean()) for k in CONFIDENCE_KEYS if k in predictions})
            if self.training_step.accumulator.last_grad_norm is not None:
                scalars["grad_norm"] = self.training_step.accumulator.last_grad_norm
            outputs = EvalOutputs.of(predictions, {"translation": translation, "quaternion": quaternion, **kwargs})
            if not outputs.several:  # several instances are matched by the evaluation; here they are only drawn
                t_pred, q_pred, t_true, q_true = outputs.one_per_image()
                scalars.update(unity_dataset_metrics(t_pred, t_true, q_pred, q_true, self.box.symmetries))
            images = {"inputs": to_network_range(as_uint8(image[:LOG_IMAGES]))}  # edflow logs [-1, 1]
            if "camera" in kwargs:
                images["poses"] = _pose_images(image, kwargs["camera"], outputs, self.box)
            return {"images": images, "scalars": scalars}

        def eval_op() -> dict:
            result = evaluate()
            predictions = self.training_step.poses(result.predictions, kwargs.get("camera"))
            camera = kwargs.get("camera")  # intrinsics of the network input and its side, for drawing poses in reports
            outputs = EvalOutputs.of(
                predictions,
                {"translation": translation, "quaternion": quaternion, **kwargs},
                result.losses,
                camera,
                None if camera is None else self.config["network"]["image_size"],
            )
            return {"labels": outputs.labels(self.box.symmetries)}

        return {"train_op": train_op, "log_op": log_op, "eval_op": eval_op}

    def _stop_diverged(
        self,
        step: int,
        losses: dict[str, np.ndarray],
        translation: np.ndarray,
        quaternion: np.ndarray,
        indices: np.ndarray | None,
        diverged_ranks: list[int],
    ) -> None:
        """Keep the last good state and raise TrainingDivergedError.

        When only examples with non-finite labels have a non-finite loss, the weights (before this
        step's update) are fine and are saved as model-<step>.ckpt. Otherwise the weights themselves
        give a NaN or inf loss: nothing is saved from now on (edflow's save-on-exception included),
        so the newest checkpoint on disk stays the last good one. Ranks decide together (the weights are
        the same on all): bad if they fail on any rank's batch; the first such rank's message is the one
        rank 0 prints.
        """
        label_ok = np.isfinite(np.asarray(translation, np.float64)).all(-1)
        label_ok &= np.isfinite(np.asarray(quaternion, np.float64)).all(-1)
        broken = ~np.isfinite(losses["total"])
        if flagged_ranks(bool(np.any(broken & label_ok)), self.ranks):  # the weights fail on some rank's batch
            self.diverged_at = step
        elif step > 0:  # step 0 holds the initial weights: nothing trained to keep
            self.ckpthook.save(force_active=True)
        message = divergence_message(step, losses, label_ok, indices, self.config)
        if self.ranks.distributed:  # every rank stops here together: the first that diverged says why, rank 0 prints
            source = diverged_ranks[0]
            message = (
                f"{from_rank(message, source, self.ranks)} (on rank {source} of {self.ranks.world}; every rank stopped)"
            )
        error = TrainingDivergedError(f"{message}. {kept_checkpoint_sentence(self.ckpthook.latest())}")
        error.reported_by_rank_zero = self.ranks.distributed
        raise error
