"""Checkpoints: round trips through a path, gs:// (real emulator) and http:// (real server); refusals."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import load_configs
from cubepose.config import validate_config
from cubepose.engine.iterator import remove_interrupted_writes
from cubepose.errors import CheckpointError, StorageError
from cubepose.models import PoseNet
from cubepose.training.checkpoints import config_differences, load_checkpoint, read_checkpoint, save_checkpoint


def small_config(image_size: int = 32, seed: int = 0) -> dict:
    config = validate_config(load_configs("base.yaml", "cpu.yaml"))
    config["network"]["image_size"] = image_size
    config["seed"] = seed
    return config


def saved(path: Path, config: dict) -> tuple[Path, PoseNet]:
    model = PoseNet(config)
    save_checkpoint(path, model=model.state_dict(), global_step=7, config=config)
    return path, model


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_checkpoints_round_trip_through_a_path_gcs_and_http(tmp_path, gcs_emulator, file_server):
    path, model = saved(tmp_path / "model-7.ckpt", small_config(seed=1))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    bucket = gcs_emulator.bucket({"runs/exp/model-7.ckpt": path})
    (file_server.folder / "model-7.ckpt").write_bytes(path.read_bytes())
    for location in (str(path), f"gs://{bucket}/runs/exp/model-7.ckpt", f"{file_server.url}/model-7.ckpt"):
        fresh = PoseNet(small_config(seed=2))
        state = load_checkpoint(location, fresh, config=small_config(), cache_dir=tmp_path / "cache", sha256=digest)
        assert state["global_step"] == 7 and state["config"]["network"]["image_size"] == 32
        assert_same_weights(fresh, model)


def test_a_wrong_pin_stops_before_loading(tmp_path, file_server):
    path, _ = saved(file_server.folder / "model-7.ckpt", small_config())
    fresh = PoseNet(small_config(seed=3))
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(StorageError, match="but the pin says 1234"):
        load_checkpoint(f"{file_server.url}/model-7.ckpt", fresh, sha256="1234", cache_dir=tmp_path)
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())


def test_truncated_foreign_and_missing_files_are_clear_errors(tmp_path):
    path, _ = saved(tmp_path / "model-7.ckpt", small_config())
    data = path.read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    (tmp_path / "image.ckpt").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(100))
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.ckpt")
    for name in ("truncated.ckpt", "image.ckpt"):
        with pytest.raises(CheckpointError, match="truncated, damaged or not a torch file"):
            read_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError, match="not a cubepose checkpoint"):
        read_checkpoint(tmp_path / "other.ckpt")
    with pytest.raises(StorageError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt", PoseNet(small_config()))


class RunsCode:
    """A pickle that runs a shell command when unpickled: what an unrestricted torch.load would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_carrying_code_is_refused_and_the_code_never_runs(tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"format": "cubepose-checkpoint-v1", "model": {}, "payload": RunsCode(marker)}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="refusing to unpickle it"):
        read_checkpoint(tmp_path / "evil.ckpt")
    assert not marker.exists()
    torch.load(tmp_path / "evil.ckpt", weights_only=False)  # what an unrestricted load does with the same file
    assert marker.exists()


def test_other_model_settings_warn_and_shapes_that_cannot_fit_fail_naming_them(tmp_path, caplog):
    path, model = saved(tmp_path / "model-7.ckpt", small_config(image_size=32))
    elsewhere = small_config(image_size=32)
    elsewhere["network"]["pretrained"] = "weights/backbone.pth"  # a setting that leaves the shapes alone
    fresh = PoseNet(small_config(image_size=32, seed=5))
    with caplog.at_level(logging.WARNING, logger="cubepose.training.checkpoints"):
        load_checkpoint(path, fresh, config=elsewhere)
    assert "network/pretrained: checkpoint None, config 'weights/backbone.pth'" in caplog.text
    assert_same_weights(fresh, model)
    larger = small_config(image_size=48)
    with pytest.raises(CheckpointError, match="it differs in network/image_size: checkpoint 32, config 48"):
        load_checkpoint(path, PoseNet(larger), config=larger)


def test_config_differences_lists_only_model_settings():
    saved_config = {"network": {"backbone": "vgg16", "image_size": 224}, "batch_size": 20}
    current = {"network": {"backbone": "small_cnn", "image_size": 224}, "batch_size": 8}
    assert config_differences(saved_config, current) == ["network/backbone: checkpoint 'vgg16', config 'small_cnn'"]


def test_a_save_killed_midway_leaves_the_previous_checkpoint_whole(tmp_path):
    path, model = saved(tmp_path / "model-7.ckpt", small_config(seed=1))
    killed = (
        "import os, sys; from cubepose.io.atomic import atomic_open\n"
        "with atomic_open(sys.argv[1], 'wb') as handle:\n"
        "    handle.write(b'half a checkpoint' * 1000); handle.flush(); os.kill(os.getpid(), 9)\n"
    )
    result = subprocess.run([sys.executable, "-c", killed, str(path)], capture_output=True)
    assert result.returncode == -9
    fresh = PoseNet(small_config(seed=2))
    load_checkpoint(path, fresh)
    assert_same_weights(fresh, model)
    (leftover,) = tmp_path.glob(".model-7.ckpt.*.tmp")
    remove_interrupted_writes(str(tmp_path))
    assert not leftover.exists() and path.exists()
