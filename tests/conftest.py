"""Shared fixtures: tiny generated datasets (real PNG files) and paths of the real tools."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import yaml

from cubepose.synth.generate import GenerationOptions, generate_dataset

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def load_configs(*names: str) -> dict:
    """Merge config files from configs/ the way edflow does: a shallow dict.update."""
    config: dict = {}
    for name in names:
        config.update(yaml.safe_load((REPO / "configs" / name).read_text()))
    return copy.deepcopy(config)


@pytest.fixture(scope="session", autouse=True)
def cache_in_tmp(tmp_path_factory):
    """Downloads and image caches go to a temporary folder, for this process and edflow subprocesses."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CUBEPOSE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    """Train / validation / test splits of a few 48 px images each."""
    root = tmp_path_factory.mktemp("cube")
    counts = {"train": 48, "validation": 16, "test": 12}
    for seed, (split, count) in enumerate(counts.items(), start=1):
        generate_dataset(root / split, GenerationOptions(count=count, seed=seed, image_size=48))
    return {split: root / split for split in counts}


@pytest.fixture
def tiny_config(tiny_data) -> dict:
    """base.yaml + cpu.yaml pointed at the tiny data, at 32 px."""
    config = load_configs("base.yaml", "cpu.yaml")
    config["network"]["image_size"] = 32
    for split, root in tiny_data.items():
        config.setdefault("data", {}).setdefault(split, {})["root"] = str(root)
    return config


# GCS endpoints (emulator, failing stubs), an S3 server and an HTTP file server; tests/ is on sys.path as the
# rootdir conftest's folder.
from gcs_fixtures import gcs_emulator, truncating_gcs, unauthorized_gcs  # noqa: E402,F401
from http_fixtures import file_server  # noqa: E402,F401
from s3_fixtures import private_s3, s3, s3_server  # noqa: E402,F401
