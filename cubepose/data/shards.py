"""A dataset written as N shards (``shard-K-of-N/`` folders, one per parallel generate step), read as one.

A root whose visible sub-folders are all named ``shard-00003-of-00008`` is sharded. It is read
only when every shard 0..N-1 is there, all of one N, and their ``cubepose generate`` manifests
agree on everything but the shard, so a missing or foreign shard can never pass for the dataset.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from cubepose.data.pose_index import PER_EXAMPLE, PoseIndex
from cubepose.errors import DatasetError

SHARD_PATTERN = re.compile(r"shard-(\d{5})-of-(\d{5})")
MANIFEST = ".cubepose-generate.json"  # written by cubepose generate into each shard


def shard_name(shard: int, shards: int) -> str:
    """The folder of shard ``shard`` (0-based) of ``shards``: ``shard-00003-of-00008``."""
    return f"shard-{shard:05d}-of-{shards:05d}"


def visible_entries(root: Path) -> list[os.DirEntry]:
    """What a dataset root holds, minus hidden files (cache sidecars, manifests) and macOS zip debris."""
    return [e for e in os.scandir(root) if not e.name.startswith((".", "__MACOSX"))]


def shard_folders(root: Path) -> list[Path] | None:
    """The shard folders of ``root`` in shard order, or None when ``root`` is not sharded.

    Raises when the shards are incomplete, of different counts, or were generated with different options.
    """
    folders = sorted(Path(e.path) for e in visible_entries(root) if e.is_dir())
    matches = [SHARD_PATTERN.fullmatch(p.name) for p in folders]
    if not folders or not any(matches):
        return None
    others = [p.name for p, m in zip(folders, matches, strict=True) if m is None]
    if others:
        raise DatasetError(
            f"{root} holds shard folders and other folders ({', '.join(others[:3])}); "
            "keep only the shard-K-of-N folders of one dataset in it"
        )
    counts = sorted({int(m.group(2)) for m in matches})
    if len(counts) > 1:
        raise DatasetError(
            f"{root} mixes shards of {' and '.join(map(str, counts))}-way splits; a dataset's shards must all come "
            "from one --shards N: delete the stale ones"
        )
    total = counts[0]
    present = {int(m.group(1)) for m in matches}
    missing = sorted(set(range(total)) - present)
    if missing:
        listed = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise DatasetError(
            f"{root} is sharded {total} ways but shard(s) {listed} are missing: run `cubepose generate {root} "
            f"--shard {missing[0]} --shards {total}` with the other shards' options, or wait for those steps to finish"
        )
    _check_same_options(folders)
    return folders


def _check_same_options(folders: list[Path]) -> None:
    """Shards must share every generate option but the shard number (read from their manifests, if any)."""
    recorded = {}
    for folder in folders:
        manifest = folder / MANIFEST
        if manifest.is_file():
            options = json.loads(manifest.read_text())
            options.pop("shard", None)
            recorded[folder.name] = options
    if len({json.dumps(v, sort_keys=True) for v in recorded.values()}) > 1:
        first, *rest = recorded.items()
        other = next(item for item in rest if item[1] != first[1])
        changed = sorted(k for k in first[1].keys() | other[1].keys() if first[1].get(k) != other[1].get(k))
        raise DatasetError(
            f"shards {first[0]} and {other[0]} were generated with different options ({', '.join(changed)}); "
            "regenerate the odd ones with the same options"
        )


def concatenate(root: Path, parts: list[PoseIndex]) -> PoseIndex:
    """One index holding ``parts`` in order, as if they had been read from ``root`` as one dataset."""
    formats = {part.format for part in parts}
    if len(formats) > 1:
        raise DatasetError(f"the shards of {root} mix layouts ({', '.join(sorted(formats))}); use one --format")
    arrays = {name: np.concatenate([getattr(part, name) for part in parts]) for name in PER_EXAMPLE}
    return replace(
        parts[0],
        root=root,
        **arrays,
        skipped=sum((part.skipped for part in parts), Counter()),
        total=sum(part.total for part in parts),
        labels_seen=sum((part.labels_seen for part in parts), Counter()),
    )
