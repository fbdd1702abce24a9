"""Seeded fuzzing of the readers: a few hundred randomly corrupted copies of a small legacy and SOLO export.

Every case must either read, with each capture used or counted as skipped, or fail with one
DatasetError/ConfigError message; never another exception, never a file outside the dataset opened
(an audit hook sees every ``open``), and every kept image decodes or fails with a DatasetError.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from image_headers import png_header_claiming

from cubepose.data.formats import read_dataset
from cubepose.data.images import decode_resized
from cubepose.errors import ConfigError, DatasetError
from cubepose.synth.generate import GenerationOptions, generate_dataset

CASES = int(os.environ.get("CUBEPOSE_FUZZ_CASES", "250"))  # per layout; raise it for a deeper search
COUNT = 4

_opened: list[str] | None = None  # paths opened while a case runs, collected by the audit hook


def _audit(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one records only while _opened is a list


HUGE_INTEGER = "<a 5000-digit integer>"  # written verbatim: Python's json refuses to write so many digits
ODD_VALUES = [None, True, False, -1, 0, 1e308, -1e308, float("nan"), 10**400, "", "1.5", [], {}, [[[]]], {"x": "y"}]
ODD_VALUES += [HUGE_INTEGER, "rgb_2\u0000.png", "\ud800", "\u00b2"]  # a NUL, a lone surrogate, a Unicode digit


def _json_nodes(value, path=()):
    """Every (path, value) inside a JSON document."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _json_nodes(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _json_nodes(item, (*path, i))


def _corrupt_json(rng: np.random.Generator, file: Path, outside: Path) -> str:
    try:
        document = json.loads(file.read_bytes())
    except ValueError:
        return f"{file.name}: already unreadable"
    nodes = [(p, v) for p, v in _json_nodes(document) if p]
    if not nodes:
        return f"{file.name}: nothing left to corrupt"
    path, _ = nodes[rng.integers(len(nodes))]
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    action = rng.integers(4)
    if action == 0 and isinstance(parent, dict):
        del parent[path[-1]]
        description = f"deleted {path}"
    elif action == 1:
        parent[path[-1]] = str(outside) if rng.random() < 0.5 else "../" * int(rng.integers(1, 4)) + outside.name
        description = f"{path} names an outside file"
    else:
        value = ODD_VALUES[rng.integers(len(ODD_VALUES))]
        parent[path[-1]] = value
        description = f"{path} = {value!r}"[:120]
    file.write_text(json.dumps(document).replace(json.dumps(HUGE_INTEGER), "-" + "9" * 5000))
    return f"{file.name}: {description}"


def _truncate_json(rng: np.random.Generator, file: Path, outside: Path) -> str:
    data = file.read_bytes()
    file.write_bytes(data[: rng.integers(max(1, len(data)))] if rng.random() < 0.8 else b"\xff\xfe" + data)
    return f"{file.name}: truncated or not UTF-8"


def _corrupt_image(rng: np.random.Generator, image: Path, outside: Path) -> str:
    choice = rng.integers(6)
    data = image.read_bytes()
    if len(data) < 64:
        return f"{image.name}: already damaged"
    if choice == 0:
        image.write_bytes(data[: rng.integers(len(data))])
    elif choice == 1:
        image.write_bytes(b"foreign bytes, not an image")
    elif choice == 2:
        image.unlink()
    elif choice == 3:
        damaged = bytearray(data)
        damaged[40:-12] = rng.integers(0, 256, len(data) - 52, dtype=np.uint8).tobytes()
        image.write_bytes(bytes(damaged))  # signature and end marker intact, contents random
    elif choice == 4:
        image.write_bytes(png_header_claiming(50_000, 50_000))
    else:
        image.unlink()
        image.symlink_to(outside)
    return f"{image.name}: image corruption {choice}"


def _link_outside(rng: np.random.Generator, path: Path, outside: Path) -> str:
    """Move a label file or folder out of the dataset and leave a symlink to it in its place."""
    folder = outside.parent / "moved-out"
    folder.mkdir(exist_ok=True)
    moved = folder / f"{len(list(folder.iterdir()))}-{path.name}"  # two files of one name stay two
    shutil.move(path, moved)
    path.symlink_to(moved, target_is_directory=moved.is_dir())
    return f"{path.name}: linked to a copy outside the dataset"


def _mutate(rng: np.random.Generator, root: Path, outside: Path) -> list[str]:
    json_files = sorted(p for p in root.rglob("*.json") if not p.name.startswith("."))
    images = sorted(root.rglob("*.png"))
    folders = sorted(p for p in root.glob("*") if p.is_dir() and not p.is_symlink())
    done = []
    for _ in range(rng.integers(1, 4)):
        kinds = [_corrupt_json, _corrupt_json, _truncate_json, _corrupt_image, _link_outside]
        kind: Callable = kinds[rng.integers(len(kinds))]
        files = images if kind is _corrupt_image else json_files + folders if kind is _link_outside else json_files
        candidates = [f for f in files if f.exists() and not f.is_symlink()]
        if candidates:
            done.append(kind(rng, candidates[rng.integers(len(candidates))], outside))
    return done


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz")
    made = {}
    for layout in ("legacy", "solo"):
        made[layout] = root / layout
        generate_dataset(made[layout], GenerationOptions(count=COUNT, seed=9, image_size=32, format=layout))
    return made


@pytest.mark.parametrize("layout", ["legacy", "solo"])
def test_corrupted_exports_read_with_skips_counted_or_fail_with_one_message(exports, layout, tmp_path):
    global _opened
    outside = tmp_path / "outside.png"  # a valid image beside every case: never to be opened
    shutil.copy(next(exports[layout].rglob("*.png")), outside)
    outcomes = {"read": 0, "refused": 0}
    for case in range(CASES):
        rng = np.random.default_rng([case, layout == "solo"])
        root = Path(shutil.copytree(exports[layout], tmp_path / f"case-{case}", symlinks=True))
        mutations = _mutate(rng, root, outside)
        _opened = []
        try:
            index = read_dataset(root)
            for path in index.image_paths:
                try:
                    decode_resized(path, 32)
                except DatasetError:
                    pass
        except (DatasetError, ConfigError) as err:
            assert str(err).strip(), (case, mutations)  # a message, naming what to fix
            outcomes["refused"] += 1
        except Exception as err:  # noqa: BLE001 - the point of the test
            pytest.fail(f"case {case} {mutations}: {type(err).__name__}: {err}")
        else:
            outcomes["read"] += 1
            assert len(index) + sum(index.skipped.values()) == index.total, (case, mutations, index.skipped)
            prefix = os.path.join(os.path.realpath(root), "")
            assert all(p.startswith(prefix) for p in index.image_paths), (case, mutations)
        finally:
            opened, _opened = _opened, None
        moved_out = os.path.join(str(outside.parent / "moved-out"), "")
        leaks = [p for p in opened if os.path.realpath(p) == str(outside) or os.path.realpath(p).startswith(moved_out)]
        assert not leaks, (case, mutations)
        shutil.rmtree(root)
        shutil.rmtree(outside.parent / "moved-out", ignore_errors=True)
    assert outcomes["read"] > CASES // 4 and outcomes["refused"] > 0, outcomes  # both paths were exercised
