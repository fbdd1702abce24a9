"""The cube's face texture atlas: six hues, each face marked with 1-6 pips like a die.

Distinct hues and pip counts make every face, and so the orientation, unambiguous under any
lighting tint; the symmetric variant is one plain grey for all faces.
"""

from __future__ import annotations

import numpy as np

FACE_SIZE = 64  # texels per face edge
# +x, -x, +y, -y, +z, -z
FACE_COLOURS = np.array(
    [[220, 40, 40], [40, 180, 60], [50, 80, 230], [240, 210, 40], [200, 60, 200], [40, 200, 210]], dtype=np.uint8
)
PIPS = {  # pip centres per count, in face units [0, 1]
    1: [(0.5, 0.5)],
    2: [(0.25, 0.25), (0.75, 0.75)],
    3: [(0.25, 0.25), (0.5, 0.5), (0.75, 0.75)],
    4: [(0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)],
    5: [(0.25, 0.25), (0.25, 0.75), (0.5, 0.5), (0.75, 0.25), (0.75, 0.75)],
    6: [(0.25, 0.25), (0.25, 0.5), (0.25, 0.75), (0.75, 0.25), (0.75, 0.5), (0.75, 0.75)],
}
SYMMETRIC_GREY = 200


def _face(colour: np.ndarray, pips: int) -> np.ndarray:
    texel = (np.arange(FACE_SIZE) + 0.5) / FACE_SIZE
    v, u = np.meshgrid(texel, texel, indexing="ij")
    face = np.broadcast_to(colour, (FACE_SIZE, FACE_SIZE, 3)).copy()
    for cu, cv in PIPS[pips]:
        face[(u - cu) ** 2 + (v - cv) ** 2 < 0.09**2] = 25
    border = (np.minimum(u, 1 - u) < 0.03) | (np.minimum(v, 1 - v) < 0.03)
    face[border] = 235
    return face


def cube_atlas(symmetric: bool = False) -> np.ndarray:
    """(FACE_SIZE, 6 * FACE_SIZE, 3) uint8: face i occupies columns [i, i + 1) * FACE_SIZE."""
    if symmetric:
        return np.full((FACE_SIZE, 6 * FACE_SIZE, 3), SYMMETRIC_GREY, dtype=np.uint8)
    return np.concatenate([_face(FACE_COLOURS[i], i + 1) for i in range(6)], axis=1)
