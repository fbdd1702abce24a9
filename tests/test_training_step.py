"""The one training step: what `edflow -t` runs is what the benchmarks drive."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_edflow_e2e import CONFIGS, _ok, edflow

from cubepose.config import validate_config
from cubepose.data import TrainDataset
from cubepose.data.images import to_network_range
from cubepose.models import PoseNet
from cubepose.training.step import NonFiniteLossError, TrainingStep


def _whole_set(dataset: TrainDataset) -> dict[str, np.ndarray]:
    examples = [dataset[i] for i in range(len(dataset))]
    return {key: np.stack([e[key] for e in examples]) for key in ("image", "translation", "quaternion", "camera")}


def _small_config(**changes: object) -> dict:
    config = {"network": {"backbone": "small_cnn", "image_size": 32}, "device": "cpu", **changes}
    return validate_config(config)


def test_edflow_train_op_takes_the_same_step_as_training_step(tiny_data, tiny_config, tmp_path):
    """One step on the whole training set (one batch: the order inside it does not change the mean loss)."""
    size = len(TrainDataset(validate_config(tiny_config)))
    _ok(edflow(["-n", "one", "-b", *CONFIGS, "-t", "--num_steps", "1"], tmp_path, tiny_data, batch_size=size))
    (checkpoint,) = tmp_path.glob("logs/*_one/train/checkpoints/model-1.ckpt")
    through_edflow = torch.load(checkpoint, weights_only=True)["model"]

    tiny_config["batch_size"] = size
    config = validate_config(tiny_config)
    network = PoseNet(config)
    trainer = TrainingStep(network, config, num_steps=1)
    batch = _whole_set(TrainDataset(config))
    trainer.train(trainer.inputs(batch["image"]), trainer.targets(batch), 0)
    assert through_edflow.keys() == network.state_dict().keys()
    # Adam's first update is about lr * sign(gradient): where a gradient is near zero, the order of
    # the batch's summation (edflow shuffles) may flip it, so a few elements in 10^5 may differ.
    mismatched = total = 0
    for name, value in network.state_dict().items():
        mismatched += int((~torch.isclose(through_edflow[name].double(), value.double(), 1e-5, 1e-6)).sum())
        total += value.numel()
    assert mismatched <= total * 1e-4, f"{mismatched} of {total} weights differ"


def test_a_non_finite_loss_stops_the_step_before_the_update():
    config = _small_config()
    network = PoseNet(config)
    before = {k: v.detach().clone() for k, v in network.named_parameters()}
    trainer = TrainingStep(network, config, num_steps=1)
    rng = np.random.default_rng(0)
    translation = np.array([[0.0, 0.0, 1.0], [np.nan, 0.0, 1.0]])
    batch = {"image": rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8), "translation": translation}
    batch["quaternion"] = np.array([[0.0, 0.0, 0.0, 1.0]] * 2)
    with pytest.raises(NonFiniteLossError) as stopped:
        trainer.train(trainer.inputs(batch["image"]), trainer.targets(batch), 0)
    assert np.isfinite(stopped.value.result.losses["total"]).tolist() == [True, False]
    for name, value in network.named_parameters():  # batch-norm statistics move in any forward pass
        assert torch.equal(value, before[name]), name


def test_uint8_images_become_exactly_the_training_datas_input():
    trainer = TrainingStep(PoseNet(_small_config()), _small_config())
    images = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    assert torch.equal(trainer.inputs(images), trainer.inputs(to_network_range(images)))


def test_without_a_horizon_the_rate_is_constant_until_a_schedule_is_set():
    config = _small_config(accumulation_steps=1, optimizer={"lr": 0.01, "schedule": "cosine", "final_lr_factor": 0.1})
    trainer = TrainingStep(PoseNet(config), config)
    batch = {"image": np.zeros((2, 32, 32, 3), np.uint8), "translation": [[0, 0, 1.0]] * 2}
    batch["quaternion"] = [[0, 0, 0, 1.0]] * 2
    inputs, targets = trainer.inputs(batch["image"]), trainer.targets(batch)
    for step in range(3):
        trainer.train(inputs, targets, step)
    assert trainer.learning_rate() == pytest.approx(0.01)
    trainer.schedule(4)
    for step in range(3, 7):
        trainer.train(inputs, targets, step)
    assert trainer.learning_rate() == pytest.approx(0.001)
