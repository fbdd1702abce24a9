"""What ``cubepose inspect`` reports about a dataset: layout, counts, skips, cameras, object size, pose ranges."""

from __future__ import annotations

import numpy as np

from cubepose.data.pose_index import PoseIndex
from cubepose.geometry.rotations import unity_euler_angles


def _ranges(values: np.ndarray, names: tuple[str, ...]) -> dict[str, list[float]]:
    # + 0.0 turns -0.0 into 0.0 for display
    return {name: [float(values[:, i].min()) + 0.0, float(values[:, i].max()) + 0.0] for i, name in enumerate(names)}


def _cameras(index: PoseIndex) -> list[dict]:
    """Each distinct camera (image size and intrinsics) with its number of examples, in order of first use."""
    rows, first, counts = np.unique(
        np.column_stack([index.image_sizes, index.cameras]), axis=0, return_index=True, return_counts=True
    )
    order = np.argsort(first)
    return [
        {
            "image_size": [int(v) for v in rows[i, :2]],
            "intrinsics": [float(v) for v in rows[i, 2:6]],
            **({"distortion": [float(v) for v in rows[i, 6:]]} if rows.shape[1] > 6 and rows[i, 6:].any() else {}),
            "examples": int(n),
        }
        for i, n in zip(order, counts[order], strict=True)
    ]


def _object_sizes(index: PoseIndex) -> list[dict]:
    """Each distinct edge lengths (m) the labels record for the box, with its number of instances (unrecorded:
    none)."""
    labelled = index.object_sizes[index.present]
    recorded = np.isfinite(labelled).all(axis=1)
    if not recorded.any():
        return []
    sizes, counts = np.unique(labelled[recorded], axis=0, return_counts=True)
    return [{"size": [float(v) for v in size], "examples": int(n)} for size, n in zip(sizes, counts, strict=True)]


def _pose_ranges(translations: np.ndarray, quaternions: np.ndarray) -> dict:
    """Ranges of position, distance and Unity's Euler angles over the labelled instances (none: empty)."""
    if not len(translations):
        return {"translation": {}, "distance": [], "rotation_deg": {}}
    distances = np.linalg.norm(translations, axis=1)
    return {
        "translation": _ranges(translations, ("x", "y", "z")),
        "distance": [float(distances.min()), float(distances.max())],
        "rotation_deg": _ranges(unity_euler_angles(quaternions), ("pitch_x", "yaw_y", "roll_z")),
    }


def summarize(index: PoseIndex) -> dict:
    """A JSON-ready summary of an index; ``first`` is the first usable capture in file order (its first
    instance), ``instances`` how many examples hold each number of instances."""
    cameras = _cameras(index)
    present = index.present
    numbers, examples = np.unique(index.instance_counts, return_counts=True)
    first = index.translations[0, 0], index.quaternions[0, 0]
    return {
        "root": str(index.root),
        "format": index.format,
        "examples": len(index),
        "captures": index.total,
        "skipped": dict(index.skipped.most_common()),
        "labels": dict(index.labels_seen.most_common()),
        "camera": {
            "intrinsics": [float(v) for v in index.cameras[0]],
            "image_size": [int(v) for v in index.image_sizes[0]],
            "distinct": len(cameras),
            "all": cameras,
        },
        "object": _object_sizes(index),
        "instances": {str(int(n)): int(count) for n, count in zip(numbers, examples, strict=True)},
        **_pose_ranges(index.translations[present], index.quaternions[present]),
        "first": {
            "translation": [float(v) for v in first[0]] if index.instance_counts[0] else [],
            "quaternion": [float(v) for v in first[1]] if index.instance_counts[0] else [],
            "image": str(index.image_paths[0]),
        },
    }


def format_summary(summary: dict) -> str:
    """The summary as aligned text for a terminal."""
    skipped = ", ".join(f"{count} {reason}" for reason, count in summary["skipped"].items()) or "none"
    labels = ", ".join(f"{name} ({count})" for name, count in summary["labels"].items()) or "none"
    first = summary["first"]
    lines = [
        ("dataset", f"{summary['root']} ({summary['format']} layout)"),
        ("examples", f"{summary['examples']} usable of {summary['captures']} captures"),
        ("skipped", skipped),
        ("labels", labels),
        *_camera_lines(summary["camera"]),
        ("object", _object_text(summary["object"])),
    ]
    if set(summary["instances"]) != {"1"}:
        shown = ", ".join(f"{count} with {n}" for n, count in summary["instances"].items())
        lines.append(("instances", f"examples by instances of the object: {shown}"))
    if summary["distance"]:
        translation = "  ".join(f"{axis} [{lo:+.3f}, {hi:+.3f}]" for axis, (lo, hi) in summary["translation"].items())
        rotation = "  ".join(f"{axis} [{lo:+.1f}, {hi:+.1f}]" for axis, (lo, hi) in summary["rotation_deg"].items())
        lines += [
            ("translation", f"{translation} m"),
            ("distance", "[{:.3f}, {:.3f}] m".format(*summary["distance"])),
            ("rotation", f"{rotation} deg (Unity's Euler angles)"),
        ]
    lines.append(("first", first["image"]))
    if first["translation"]:
        lines += [
            ("", "translation " + " ".join(f"{v:+.4f}" for v in first["translation"])),
            ("", "quaternion  " + " ".join(f"{v:+.4f}" for v in first["quaternion"]) + " (x y z w)"),
        ]
    return "\n".join(f"{name:<12}{text}" for name, text in lines)


def _camera_lines(camera: dict) -> list[tuple[str, str]]:
    """One line per distinct camera: resolution, fx fy cx cy, and how many examples use it when there are several."""
    lines = []
    for entry in camera["all"]:
        fx, fy, cx, cy = entry["intrinsics"]
        width, height = entry["image_size"]
        count = f" ({entry['examples']} examples)" if camera["distinct"] > 1 else ""
        lens = "  lens " + " ".join(f"{v:g}" for v in entry["distortion"]) if "distortion" in entry else ""
        lines.append(("", f"fx {fx:.2f}  fy {fy:.2f}  cx {cx:.2f}  cy {cy:.2f} px at {width}x{height}{lens}{count}"))
    lines[0] = ("camera", lines[0][1])
    return lines


def _object_text(sizes: list[dict]) -> str:
    """The labelled box's edge lengths, or a note that the labels record none."""
    if not sizes:
        return "the labels record no box size"
    several = len(sizes) > 1
    parts = [
        " x ".join(f"{v:g}" for v in entry["size"]) + " m" + (f" ({entry['examples']} examples)" if several else "")
        for entry in sizes
    ]
    return ";  ".join(parts) + "  (x y z edges of the labels' 3D box; keep object/dimensions equal)"
