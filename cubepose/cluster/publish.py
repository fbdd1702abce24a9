"""What a pipeline step leaves behind when its pod goes: the edflow run folder in gs:// (or s3://), and KFP outputs.

``cubepose publish logs --to gs://bucket/runs`` uploads the newest run folder under edflow's
``logs/`` to ``gs://bucket/runs/<run name>/`` (checkpoints go there during training through
``checkpoint/upload``; the newest is sent again only if that upload failed). It can write the
newest checkpoint's URL to a KFP output parameter file, and the newest metrics.json as a KFP
Metrics artifact: the artifact file plus its metadata in the executor output, which the
Kubeflow launcher records and the UI shows as the run's metrics.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from cubepose.errors import CubeposeError
from cubepose.io.atomic import atomic_write_text
from cubepose.storage import Uploader, backend_for, upload_folder

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = re.compile(r"model-(\d+)\.ckpt")


@dataclass(frozen=True)
class PublishedRun:
    """Which run folder was published, where it and its newest checkpoint now are."""

    run: Path
    url: str
    checkpoint_url: str | None


def newest_run(logs: Path) -> Path:
    """The newest run folder in edflow's ``logs/`` (names start with a sortable timestamp)."""
    runs = sorted(p for p in logs.iterdir() if p.is_dir()) if logs.is_dir() else []
    if not runs:
        raise CubeposeError(f"no edflow run folder in {logs}; run edflow in this folder first (it writes logs/<run>)")
    return runs[-1]


def newest_checkpoint(run: Path) -> Path | None:
    """The checkpoint of the highest step in ``<run>/train/checkpoints``, if any."""
    found = [
        (int(m.group(1)), p) for p in run.glob("train/checkpoints/*.ckpt") if (m := CHECKPOINT_NAME.fullmatch(p.name))
    ]
    return max(found)[1] if found else None


def publish_run(logs: Path, destination: str) -> PublishedRun:
    """Upload the newest run under ``logs`` to ``<destination>/<run name>/``; checkpoints stay flat beside it."""
    run = newest_run(logs)
    url = f"{destination.rstrip('/')}/{run.name}"
    sent = upload_folder(run, url, exclude=("*.ckpt",))
    logger.info("published %s to %s (%d files sent)", run, url, sent)
    checkpoint = newest_checkpoint(run)
    if checkpoint is None:
        return PublishedRun(run, url, None)
    uploader = Uploader(url)  # the same place and name checkpoint/upload gives it
    checkpoint_url = uploader.target(checkpoint.name)
    if not _exists(checkpoint_url):
        uploader.submit(checkpoint)
        uploader.close()
        if uploader.failed:
            raise CubeposeError(f"could not upload {checkpoint} to {checkpoint_url}; see the errors above")
    return PublishedRun(run, url, checkpoint_url)


def _exists(location: str) -> bool:
    backend = backend_for(location)
    return backend.module().exists(location) if backend.remote else Path(location).is_file()


def write_kfp_metrics(
    metrics: dict[str, float], metrics_path: str, executor_input: str, output: str = "metrics"
) -> None:
    """Write ``metrics`` as the KFP Metrics artifact ``output``: its file, and its metadata in the executor output.

    ``executor_input`` is the task's ``{{$}}`` (the executor input JSON), which names the
    executor output file and the artifact's URI.
    """
    try:
        task = json.loads(executor_input)
        artifact = task["outputs"]["artifacts"][output]["artifacts"][0]
        output_file = task["outputs"]["outputFile"]
    except (json.JSONDecodeError, KeyError, IndexError, TypeError) as err:
        raise CubeposeError(
            f"--kfp-executor-input is not a KFP executor input with a {output!r} artifact ({err!r}); "
            "pass the literal {{$}} placeholder in the component's arguments"
        ) from None
    numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(metrics_path, json.dumps(numbers, indent=1) + "\n")
    record = {"name": artifact.get("name", ""), "uri": artifact.get("uri", ""), "metadata": numbers}
    Path(output_file).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output_file, json.dumps({"artifacts": {output: {"artifacts": [record]}}}) + "\n")
    logger.info("KFP metrics: %s", ", ".join(f"{k} {v:.6g}" for k, v in sorted(numbers.items())))
