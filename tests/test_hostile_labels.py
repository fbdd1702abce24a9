"""Label values and folders an attacker or a broken exporter writes: each bad capture is skipped and counted,
never fatal to the dataset, and no label file outside the dataset is opened (the readers of all three layouts)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BIN
from cubepose.data.formats import read_dataset
from cubepose.errors import DatasetError
from cubepose.synth.generate import GenerationOptions, generate_dataset

COUNT = 4
HUGE = "9" * 5000  # beyond Python's 4,300-digit limit on converting an integer literal
_opened: list[str] | None = None  # files opened while a read runs, collected by the audit hook


def _audit(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _opened.append(os.path.realpath(os.fsdecode(args[0])))


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one records only while _opened is a list


def read_recording_opens(root: Path):
    """``read_dataset(root)`` and the real paths of every file it opened."""
    global _opened
    _opened = []
    try:
        return read_dataset(root), _opened
    finally:
        _opened = None


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile-labels")
    for layout in ("legacy", "solo", "bop"):
        generate_dataset(root / layout, GenerationOptions(count=COUNT, seed=5, image_size=32, format=layout))
    return {layout: root / layout for layout in ("legacy", "solo", "bop")}


def copy_of(pristine: dict[str, Path], layout: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine[layout], tmp_path / layout))


def first_label_file(root: Path) -> Path:
    """The JSON file that holds the first capture's labels, in any layout."""
    for pattern in ("Dataset*/captures_000.json", "sequence.0/step0.frame_data.json", "train/000000/scene_gt.json"):
        found = sorted(root.glob(pattern))
        if found:
            return found[0]
    raise AssertionError(f"no label file in {root}")


def first_capture(document: dict | list) -> dict:
    """The first capture of a legacy or SOLO label document."""
    return document["captures"][0]


def rewrite(path: Path, change, raw: dict[str, str] | None = None) -> None:
    """Apply ``change`` to the parsed document, then put each ``raw`` placeholder's text in verbatim (JSON numbers
    Python's json module refuses to write)."""
    document = json.loads(path.read_text())
    change(document)
    text = json.dumps(document)
    for placeholder, literal in (raw or {}).items():
        text = text.replace(json.dumps(placeholder), literal)
    path.write_text(text)


def set_huge_number(layout: str, document: dict) -> None:
    """The field the finding named per layout: legacy ``translation``, SOLO ``dimension``, BOP ``obj_id``."""
    if layout == "legacy":
        first_capture(document)["annotations"][0]["values"][0]["translation"][0] = "HUGE"
    elif layout == "solo":
        first_capture(document)["dimension"][0] = "HUGE"
    else:
        document["0"][0]["obj_id"] = "HUGE"


@pytest.mark.parametrize("layout", ["legacy", "solo", "bop"])
def test_a_5000_digit_integer_skips_its_capture_only(pristine, layout, tmp_path):
    root = copy_of(pristine, layout, tmp_path)
    rewrite(first_label_file(root), lambda doc: set_huge_number(layout, doc), {"HUGE": HUGE})
    index = read_dataset(root)
    assert len(index) == COUNT - 1 and sum(index.skipped.values()) == 1 and index.total == COUNT


def test_inspect_counts_the_huge_integer_instead_of_advising_sys_set_int_max_str_digits(pristine, tmp_path):
    root = copy_of(pristine, "legacy", tmp_path)
    rewrite(first_label_file(root), lambda doc: set_huge_number("legacy", doc), {"HUGE": HUGE})
    result = subprocess.run([str(BIN / "cubepose"), "inspect", str(root), "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["skipped"] == {"non-finite translation": 1}
    assert "set_int_max_str_digits" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("layout", ["legacy", "solo"])
@pytest.mark.parametrize("name", ["rgb_2\u0000.png", "\ud800", "images/\ud800.png"])
def test_an_image_name_no_file_can_have_skips_its_capture_only(pristine, layout, name, tmp_path):
    root = copy_of(pristine, layout, tmp_path)
    rewrite(first_label_file(root), lambda doc: first_capture(doc).update(filename=name))
    index = read_dataset(root)
    assert len(index) == COUNT - 1 and index.skipped == {"image name no file can have": 1}


@pytest.mark.parametrize("key", ["\u00b2", "\u0663", HUGE])
def test_a_bop_image_id_that_is_not_an_ascii_number_skips_its_image_only(pristine, key, tmp_path):
    root = copy_of(pristine, "bop", tmp_path)
    rewrite(first_label_file(root), lambda doc: doc.update({key: doc.pop("0")}))
    index = read_dataset(root / "train")
    assert len(index) == COUNT - 1 and index.skipped == {"malformed capture": 1}


def outside_copy(folder: Path, tmp_path: Path) -> Path:
    """A copy of ``folder`` outside every dataset, to link to."""
    return Path(shutil.copytree(folder, tmp_path / "elsewhere" / folder.name))


def test_a_solo_sequence_linked_outside_is_counted_and_never_opened(pristine, tmp_path):
    root = copy_of(pristine, "solo", tmp_path)
    outside = outside_copy(root / "sequence.1", tmp_path)
    shutil.rmtree(root / "sequence.1")
    (root / "sequence.1").symlink_to(outside, target_is_directory=True)
    (root / "sequence.2" / "step0.frame_data.json").unlink()
    (root / "sequence.2" / "step0.frame_data.json").symlink_to(outside / "step0.frame_data.json")
    index, opened = read_recording_opens(root)
    assert len(index) == COUNT - 2 and index.skipped == {"label file outside the dataset": 2}
    assert not [path for path in opened if path.startswith(str(tmp_path / "elsewhere"))]


def test_a_bop_scene_linked_outside_is_counted_and_never_opened(pristine, tmp_path):
    root = copy_of(pristine, "bop", tmp_path)
    outside = outside_copy(root / "train" / "000000", tmp_path)
    (root / "train" / "000001").symlink_to(outside, target_is_directory=True)
    index, opened = read_recording_opens(root / "train")
    assert len(index) == COUNT and index.skipped == {"label file outside the dataset": 1}
    assert not [path for path in opened if path.startswith(str(tmp_path / "elsewhere"))]


def test_a_legacy_captures_file_or_dataset_folder_linked_outside_is_not_read(pristine, tmp_path):
    root = copy_of(pristine, "legacy", tmp_path)
    dataset = next(root.glob("Dataset*"))
    outside = outside_copy(dataset, tmp_path)
    (dataset / "captures_001.json").symlink_to(outside / "captures_000.json")
    index, opened = read_recording_opens(root)
    assert len(index) == COUNT and index.skipped == {"label file outside the dataset": 1}
    assert not [path for path in opened if path.startswith(str(tmp_path / "elsewhere"))]

    shutil.rmtree(dataset)
    dataset.symlink_to(outside, target_is_directory=True)
    with pytest.raises(DatasetError, match="links outside the dataset"):
        read_dataset(root)
