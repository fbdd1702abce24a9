"""The object's face texture atlas: die faces, plain grey, or six images of the user's own object.

Die faces have six hues, each marked with 1-6 pips, so every face, and so the orientation, is
unambiguous under any lighting tint; ``plain`` is one grey for all faces (a symmetric cube). User
images show each face as seen from outside the object, upright as the table below describes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FACE_SIZE = 64  # texels per face edge of the die and plain atlases
PHOTO_FACE_SIZE = 256  # texels per face edge of user images, which hold more detail than pips
FACE_STYLES = ("die", "plain")
FACE_NAMES = ("+x", "-x", "+y", "-y", "+z", "-z")  # the atlas's face order, and that of --faces FILE1 ... FILE6
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
# How each face is seen from outside, in the object's frame (Unity's, left-handed): the directions of an image's
# right and top edges. Side faces stand upright (+y up, as the object stands on the table); top and bottom have
# their top edge towards +z.
FACE_VIEWS = {
    "+x": ((0, 0, 1), (0, 1, 0)),
    "-x": ((0, 0, -1), (0, 1, 0)),
    "+y": ((1, 0, 0), (0, 0, 1)),
    "-y": ((-1, 0, 0), (0, 0, 1)),
    "+z": ((-1, 0, 0), (0, 1, 0)),
    "-z": ((1, 0, 0), (0, 1, 0)),
}


# The unfolded net (a 4 x 3 cross, as 3D tools export a box's texture), seen from outside: the middle row holds
# the four sides left to right (+x, front +z, -x, -z) upright, the top (+y) above the front and the bottom (-y)
# below it. Per face: (row, column, quarter turns to apply so it reads as FACE_VIEWS describes it): the top
# in the net has its top edge away from the front (-z), so it is turned half way round.
NET_CELLS = {"+x": (1, 0, 0), "-x": (1, 2, 0), "+y": (0, 1, 2), "-y": (2, 1, 0), "+z": (1, 1, 0), "-z": (1, 3, 0)}
NET_ASPECT = 4 / 3


def net_faces(net: np.ndarray) -> list[np.ndarray]:
    """The six faces (``FACE_NAMES`` order, each as seen from outside, upright as ``FACE_VIEWS``) of an unfolded
    net image (H, W, 3) of aspect 4:3; each face is the cell's square, W / 4 on a side."""
    side = net.shape[1] // 4
    faces = []
    for name in FACE_NAMES:
        row, column, turns = NET_CELLS[name]
        cell = net[row * side : (row + 1) * side, column * side : (column + 1) * side]
        faces.append(np.rot90(cell, turns).copy())
    return faces


def _face(colour: np.ndarray, pips: int) -> np.ndarray:
    texel = (np.arange(FACE_SIZE) + 0.5) / FACE_SIZE
    v, u = np.meshgrid(texel, texel, indexing="ij")
    face = np.broadcast_to(colour, (FACE_SIZE, FACE_SIZE, 3)).copy()
    for cu, cv in PIPS[pips]:
        face[(u - cu) ** 2 + (v - cv) ** 2 < 0.09**2] = 25
    border = (np.minimum(u, 1 - u) < 0.03) | (np.minimum(v, 1 - v) < 0.03)
    face[border] = 235
    return face


def _atlas_face(image: np.ndarray, face: int) -> np.ndarray:
    """A square ``image`` of face ``face`` (as seen from outside) laid out as the mesh's texture coordinates read it.

    The mesh (gl_renderer._box_mesh) runs a face's texture columns along the first of its two other axes and its
    rows, bottom to top, along the second; this turns and mirrors the image to match ``FACE_VIEWS``.
    """
    size = image.shape[0]
    axis = face // 2
    u_axis, v_axis = [a for a in range(3) if a != axis]
    right, up = (np.array(vector, dtype=np.float64) for vector in FACE_VIEWS[FACE_NAMES[face]])
    centred = (np.arange(size) + 0.5) / size - 0.5  # texel centres, in face units about the face's centre
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    point = np.zeros((size, size, 3))
    point[..., u_axis], point[..., v_axis] = centred[cols], -centred[rows]  # atlas row 0 is the face's top (+v)
    seen_col = np.rint((point @ right + 0.5) * size - 0.5).astype(int)
    seen_row = np.rint((0.5 - point @ up) * size - 0.5).astype(int)
    return image[seen_row, seen_col]


def cube_atlas(faces: str | Sequence[np.ndarray] = "die") -> np.ndarray:
    """(S, 6 * S, 3) uint8: face i (in ``FACE_NAMES`` order) occupies columns [i, i + 1) * S.

    ``faces``: "die", "plain", or six square uint8 RGB images of one size, each a face seen from outside.
    """
    if isinstance(faces, str):
        if faces == "plain":
            return np.full((FACE_SIZE, 6 * FACE_SIZE, 3), SYMMETRIC_GREY, dtype=np.uint8)
        if faces == "die":
            return np.concatenate([_face(FACE_COLOURS[i], i + 1) for i in range(6)], axis=1)
        raise ValueError(f"faces must be one of {', '.join(FACE_STYLES)} or six images, got {faces!r}")
    if len(faces) != 6:
        raise ValueError(f"faces takes six images ({' '.join(FACE_NAMES)}), got {len(faces)}")
    return np.concatenate([_atlas_face(np.asarray(image, np.uint8), i) for i, image in enumerate(faces)], axis=1)
