"""Data-parallel training with ``torch.distributed``: the ranks torchrun starts, each rank's share of the data,
the model wrapped for gradient averaging, and agreement across ranks.

``torchrun --nproc_per_node N`` (and ``--nnodes``/``--rdzv-endpoint`` for several machines) starts N copies of
the same command and tells each its ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in the environment. Without
them cubepose runs as one process and everything here is the identity. With them: each rank trains on its own
disjoint share of the training split (``shard``), ``DistributedDataParallel`` averages the gradients (NCCL on
GPUs, gloo on CPUs), and rank 0 (``Ranks.main``) alone writes checkpoints, logs and evaluations.
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from cubepose.errors import ConfigError

logger = logging.getLogger(__name__)

# a collective that waits longer than this ends the job: a lost rank, or rank 0 evaluating for longer (the other
# ranks wait for it in the next step's gradient average)
TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class Ranks:
    """This process's ``rank`` of ``world`` processes, and its ``local`` index on its machine (its GPU)."""

    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes the run's files (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def launched_ranks(environ: dict[str, str] | None = None) -> Ranks:
    """The ranks torchrun describes in the environment (one process when it does not)."""
    environ = os.environ if environ is None else environ
    try:
        ranks = Ranks(int(environ.get("RANK", 0)), int(environ.get("WORLD_SIZE", 1)), int(environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise ConfigError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be integers; start the ranks with torchrun, which sets them"
        ) from None
    if not (ranks.world >= 1 and 0 <= ranks.rank < ranks.world and ranks.local >= 0):
        raise ConfigError(f"RANK {ranks.rank} of WORLD_SIZE {ranks.world} is impossible; start the ranks with torchrun")
    return ranks


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """Each rank's own GPU (``cuda:<LOCAL_RANK>``) when training on CUDA; the CPU stays the CPU."""
    if device.type == "cuda" and ranks.distributed:
        return torch.device("cuda", ranks.local)
    return device


def join(device: torch.device, ranks: Ranks) -> None:
    """Join the process group of ``ranks`` (NCCL on CUDA, gloo on CPU) once; nothing for one process."""
    if not ranks.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend, store=attempt_store(ranks), rank=ranks.rank, world_size=ranks.world, timeout=TIMEOUT
    )
    logger.info("rank %d of %d joined the %s process group", ranks.rank, ranks.world, backend)


def attempt_store(ranks: Ranks, environ: dict[str, str] | None = None) -> dist.Store:
    """The key-value store the ranks meet in (torchrun's, at MASTER_ADDR:MASTER_PORT), its keys prefixed with
    torchrun's restart count: after a restart the ranks must not read the addresses the ranks of the failed
    attempt published there, which are gone (their process group would wait on them)."""
    environ = os.environ if environ is None else environ
    agent = environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # torchrun's agent hosts it, else rank 0 does
    store = dist.TCPStore(
        environ["MASTER_ADDR"],
        int(environ["MASTER_PORT"]),
        ranks.world,
        is_master=ranks.main and not agent,
        timeout=TIMEOUT,
    )
    return dist.PrefixStore(f"cubepose/attempt-{environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def shard(count: int, ranks: Ranks) -> np.ndarray:
    """The indices of ``count`` examples that ``ranks.rank`` trains on: every ``world``-th one, from its rank.

    The shares are disjoint and, together, every example once; each holds ``count // world`` examples (the
    last ``count % world`` are left out), because every rank must take as many steps per epoch as the others:
    a rank with one batch more would wait for a gradient that never comes.
    """
    usable = count - count % ranks.world
    return np.arange(ranks.rank, usable, ranks.world)


def data_parallel(model: torch.nn.Module, device: torch.device, ranks: Ranks) -> torch.nn.Module:
    """``model`` wrapped to average its gradients over the ranks (``DistributedDataParallel``); as it is alone."""
    if not ranks.distributed:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def flagged_ranks(flag: bool, ranks: Ranks) -> list[int]:
    """The ranks on which ``flag`` holds (one small all-gather; alone: this process's answer)."""
    if not ranks.distributed:
        return [0] if flag else []
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    mine = torch.tensor([1.0 if flag else 0.0], device=device)
    every = [torch.zeros_like(mine) for _ in range(ranks.world)]
    dist.all_gather(every, mine)
    return [rank for rank, value in enumerate(every) if value.item() > 0]


def from_rank(value: object, source: int, ranks: Ranks) -> object:
    """``value`` as rank ``source`` has it, on every rank (every rank must call this together)."""
    if not ranks.distributed:
        return value
    shared = [value]
    dist.broadcast_object_list(shared, src=source)
    return shared[0]


def shared_run_folder(root: str, evaluation: str, ranks: Ranks) -> tuple[str, str | None]:
    """Rank 0's run folder, and the folder this rank's `edflow` made beside it that this rank should remove once
    edflow has written its configs there (None on rank 0). ``cubepose.engine.ranked_edflow`` names the other
    ranks' folders apart: a new run's own folder, or with ``-p`` its evaluation folder in the shared run; neither
    holds more than configs and an empty log."""
    shared = [root, evaluation]
    dist.broadcast_object_list(shared, src=0)
    if ranks.main:
        return shared[0], None
    if os.path.realpath(root) != os.path.realpath(shared[0]):
        return shared[0], root
    return shared[0], evaluation if os.path.realpath(evaluation) != os.path.realpath(shared[1]) else None


def remove_folder(folder: str | None) -> None:
    """Remove a rank's own edflow folder (``shared_run_folder``); nothing for None."""
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
