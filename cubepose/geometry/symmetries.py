"""The object's rotational symmetries (``object/symmetries``): the one place their groups are built.

A symmetric object looks the same turned by any of its symmetries s, so a pose q is defined only up
to them: q and q * s (the object turned by s first, then by q) show the same object. Losses and
metrics therefore compare a prediction with the closest of these equivalents. A group is an array
(K, 4) of unit quaternions x, y, z, w with w >= 0, the identity first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import numpy as np

from cubepose.geometry.rotations import (
    axis_angle_quaternions,
    canonical_sign,
    quaternion_multiply,
    quaternion_to_matrix,
)

SymmetrySpec = str | Sequence[Sequence[float]]

NAMED_GROUPS = ("none", "cube", "box")
IDENTITY = np.array([[0.0, 0.0, 0.0, 1.0]])
UNIT_TOLERANCE = 1e-3  # |q| of an explicit symmetry must be 1 within this
EDGE_TOLERANCE = 1e-3  # relative: edges of `box` this close count as equal (0.1 mm on a 10 cm box)
SAME_ROTATION = 1 - 1e-9  # |<p, q>| above this: one rotation


def _canonical(q: np.ndarray) -> np.ndarray:
    """Unit quaternions with w >= 0 and floating-point dust (|v| < 1e-12) set to zero."""
    q = np.asarray(q, np.float64) / np.linalg.norm(q, axis=-1, keepdims=True)
    q = np.where(np.abs(q) < 1e-12, 0.0, q)
    return canonical_sign(q)


def _distinct(q: np.ndarray) -> np.ndarray:
    """``q`` (K, 4) without repeated rotations (q and -q are one), first occurrences kept in order."""
    same = np.abs(q @ q.T) > SAME_ROTATION
    return q[~np.triu(same, k=1).any(axis=0)]


def cube_rotations() -> np.ndarray:
    """The 24 proper rotations of a cube (24, 4): identity, quarter and half turns about the face axes,
    half turns about the edge axes and third turns about the body diagonals."""
    faces = np.eye(3)
    edges = np.array([[1, s, 0] for s in (1, -1)] + [[1, 0, s] for s in (1, -1)] + [[0, 1, s] for s in (1, -1)])
    corners = np.array([[1, sy, sz] for sy in (1, -1) for sz in (1, -1)])
    axes = [faces, faces, faces, edges, corners, corners]
    angles = [np.pi / 2, np.pi, 3 * np.pi / 2, np.pi, 2 * np.pi / 3, 4 * np.pi / 3]
    units = [a / np.linalg.norm(a, axis=-1, keepdims=True) for a in axes]
    turns = [axis_angle_quaternions(a, np.full(len(a), t)) for a, t in zip(units, angles, strict=True)]
    return _canonical(np.concatenate([IDENTITY, *turns]))


def box_rotations(dimensions: Sequence[float], tolerance: float = EDGE_TOLERANCE) -> np.ndarray:
    """The cube rotations that map a box of edge lengths ``dimensions`` (x, y, z) onto itself: 4 for three
    distinct edges, 8 when two are equal, 24 when all are (equal within ``tolerance``, relative)."""
    rotations = cube_rotations()
    permutations = np.rint(np.abs(quaternion_to_matrix(rotations)))  # where each axis goes
    edges = np.asarray(dimensions, np.float64)
    keeps = np.isclose(permutations @ edges, edges, rtol=tolerance, atol=0).all(axis=-1)
    return rotations[keeps]


def symmetry_problem(spec: object) -> str | None:
    """Why ``spec`` is not a usable ``object/symmetries`` value, or None."""
    if isinstance(spec, str) and spec in NAMED_GROUPS:
        return None
    if isinstance(spec, str):
        return f"{spec!r} is not none, cube, box or a list of quaternions [x, y, z, w]"
    if not isinstance(spec, (list, tuple)) or not spec:
        return f"expected none, cube, box or a list of unit quaternions [x, y, z, w], got {spec!r}"
    for index, item in enumerate(spec):
        shown = list(item) if isinstance(item, (list, tuple)) else item  # a Box holds tuples: name them as written
        numbers = isinstance(item, (list, tuple)) and all(isinstance(v, Real) and not isinstance(v, bool) for v in item)
        if not numbers or len(item) != 4 or not all(math.isfinite(v) for v in item):
            return f"item {index} {shown!r} is not 4 finite numbers [x, y, z, w]"
        length = math.sqrt(sum(float(v) ** 2 for v in item))
        if abs(length - 1) > UNIT_TOLERANCE:
            return f"item {index} {shown!r} has length {length:.4g}, not 1 (within {UNIT_TOLERANCE:g}); normalise it"
    return None


def symmetry_group(spec: SymmetrySpec, dimensions: Sequence[float]) -> np.ndarray:
    """The rotations (K, 4) that ``spec`` names for a box of ``dimensions``; an explicit list is normalised,
    given w >= 0, rid of repeats and the identity put first. Raises ValueError naming ``object/symmetries``."""
    problem = symmetry_problem(spec)
    if problem is not None:
        raise ValueError(f"object/symmetries: {problem}")
    if spec == "none":
        return IDENTITY.copy()
    if spec == "cube":
        return cube_rotations()
    if spec == "box":
        return box_rotations(dimensions)
    return _distinct(_canonical(np.concatenate([IDENTITY, np.asarray(spec, np.float64)])))


def same_group(a: np.ndarray, b: np.ndarray, tolerance: float = 1e-6) -> bool:
    """Whether two sets of rotations (K, 4) are the same (q and -q one rotation; order free)."""
    a, b = _distinct(_canonical(a)), _distinct(_canonical(b))
    close = np.abs(a @ b.T) > 1 - tolerance
    return len(a) == len(b) and bool(close.any(axis=1).all() and close.any(axis=0).all())


def named_group(rotations: np.ndarray, dimensions: Sequence[float]) -> SymmetrySpec:
    """``object/symmetries`` for ``rotations``: the name of the group they are (none, cube, box), else
    the non-identity rotations as a list of [x, y, z, w]."""
    for name in NAMED_GROUPS:
        if same_group(rotations, symmetry_group(name, dimensions)):
            return name
    rotations = _distinct(_canonical(np.concatenate([IDENTITY, rotations])))
    return [[round(float(v), 6) for v in q] for q in rotations[1:]]


def is_identity_only(symmetries: np.ndarray | None) -> bool:
    """Whether ``symmetries`` is the trivial group (or None): losses and metrics then skip the minimum."""
    return symmetries is None or (len(symmetries) == 1 and np.array_equal(symmetries, IDENTITY))


def right_products(symmetries: np.ndarray) -> np.ndarray:
    """Matrices (K, 4, 4) with ``M[k] @ q == q * s_k``: composing with each symmetry as one linear map, which
    torch losses apply to a batch at once."""
    basis = np.eye(4)[None, :, :]  # (1, 4 columns, 4)
    return np.swapaxes(quaternion_multiply(basis, np.asarray(symmetries, np.float64)[:, None, :]), -1, -2)


def symmetric_equivalents(q: np.ndarray, symmetries: np.ndarray) -> np.ndarray:
    """The rotations (..., K, 4) that show the object exactly as ``q`` (..., 4) does: q * s_k, w >= 0."""
    equivalents = np.einsum("kij,...j->...ki", right_products(symmetries), np.asarray(q, np.float64))
    return canonical_sign(equivalents)


def equivalent_classes(group: np.ndarray, appearance: np.ndarray) -> np.ndarray:
    """(G, G) booleans: [j, k] says that g_j g_k^-1 is one of the ``appearance`` symmetries (A, 4), for the
    rotations g of ``group`` (G, 4). A keypoint model that assigns corners by the box's shape symmetries
    (``group``) and then names g_k although g_j is true still finds an orientation that looks the same."""
    group = np.asarray(group, np.float64)
    inverses = group * np.array([-1.0, -1.0, -1.0, 1.0])
    products = quaternion_multiply(group[:, None, :], inverses[None, :, :])  # (G, G, 4): g_j g_k^-1
    return (np.abs(products @ np.asarray(appearance, np.float64).T) > SAME_ROTATION).any(axis=-1)
