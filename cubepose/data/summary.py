"""What ``cubepose inspect`` reports about a dataset: layout, counts, skips, camera, pose ranges."""

from __future__ import annotations

import numpy as np

from cubepose.data.pose_index import PoseIndex
from cubepose.geometry import unity_euler_angles


def _ranges(values: np.ndarray, names: tuple[str, ...]) -> dict[str, list[float]]:
    # + 0.0 turns -0.0 into 0.0 for display
    return {name: [float(values[:, i].min()) + 0.0, float(values[:, i].max()) + 0.0] for i, name in enumerate(names)}


def summarize(index: PoseIndex) -> dict:
    """A JSON-ready summary of an index; ``first`` is the first usable capture in file order."""
    cameras, first_camera = np.unique(np.column_stack([index.cameras, index.image_sizes]), axis=0, return_index=True)
    distances = np.linalg.norm(index.translations, axis=1)
    angles = unity_euler_angles(index.quaternions)
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
        },
        "translation": _ranges(index.translations, ("x", "y", "z")),
        "distance": [float(distances.min()), float(distances.max())],
        "rotation_deg": _ranges(angles, ("pitch_x", "yaw_y", "roll_z")),
        "first": {
            "translation": [float(v) for v in index.translations[0]],
            "quaternion": [float(v) for v in index.quaternions[0]],
            "image": str(index.image_paths[0]),
        },
    }


def format_summary(summary: dict) -> str:
    """The summary as aligned text for a terminal."""
    camera = summary["camera"]
    fx, fy, cx, cy = camera["intrinsics"]
    width, height = camera["image_size"]
    skipped = ", ".join(f"{count} {reason}" for reason, count in summary["skipped"].items()) or "none"
    labels = ", ".join(f"{name} ({count})" for name, count in summary["labels"].items()) or "none"
    translation = "  ".join(f"{axis} [{lo:+.3f}, {hi:+.3f}]" for axis, (lo, hi) in summary["translation"].items())
    rotation = "  ".join(f"{axis} [{lo:+.1f}, {hi:+.1f}]" for axis, (lo, hi) in summary["rotation_deg"].items())
    first = summary["first"]
    lines = [
        ("dataset", f"{summary['root']} ({summary['format']} layout)"),
        ("examples", f"{summary['examples']} usable of {summary['captures']} captures"),
        ("skipped", skipped),
        ("labels", labels),
        ("camera", f"fx {fx:.2f}  fy {fy:.2f}  cx {cx:.2f}  cy {cy:.2f} px at {width}x{height}"),
        ("", f"{camera['distinct']} distinct camera(s)"),
        ("translation", f"{translation} m"),
        ("distance", "[{:.3f}, {:.3f}] m".format(*summary["distance"])),
        ("rotation", f"{rotation} deg (Unity's Euler angles)"),
        ("first", first["image"]),
        ("", "translation " + " ".join(f"{v:+.4f}" for v in first["translation"])),
        ("", "quaternion  " + " ".join(f"{v:+.4f}" for v in first["quaternion"]) + " (x y z w)"),
    ]
    return "\n".join(f"{name:<12}{text}" for name, text in lines)
