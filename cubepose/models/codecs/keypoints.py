"""The object's keypoints in the image and the pose back from them: the geometry of a keypoint model.

A keypoint model predicts where the object's centre and the 8 corners of its box project (DOPE's
belief maps, YOLO-6D's points); a PnP solve with each example's intrinsics turns those pixels into a
pose in that camera's frame, so the pose does not depend on the camera the model was trained with.
Pixels follow cubepose's (Unity's) convention: u = cx + fx x / z, v = cy - fy y / z.
"""

from __future__ import annotations

import math

import numpy as np
import roma
import torch
import torch.nn.functional as F
from kornia.geometry.calibration import solve_pnp_dlt

from cubepose.geometry.distortion import PINHOLE_COLUMNS, distort, is_distorted, undistort
from cubepose.geometry.object import Box
from cubepose.geometry.projection import OPENCV_AXES, pinhole_pixels, project_with_intrinsics, transform_points
from cubepose.geometry.rays import ray_rotations
from cubepose.geometry.rotations import canonical_sign
from cubepose.geometry.symmetries import is_identity_only, right_products

REFINE_ITERATIONS = 6  # Levenberg-Marquardt steps after the linear solve; it converges in 2-3 from a good DLT start
INITIAL_DAMPING = 1e-3  # relative to the normal equations' diagonal: nearly Gauss-Newton while steps succeed
KEYPOINTS = 9  # the centre, then the 8 corners in Box.corners() order
MIN_WEIGHT = 1e-3  # added to every weight: points all scored 0 still give a solvable system
Y_FLIP = torch.tensor(OPENCV_AXES, dtype=torch.float64)


def object_keypoints(box: Box) -> np.ndarray:
    """(9, 3) the box's centre and its 8 corners in the object's frame (metres)."""
    return np.concatenate([np.zeros((1, 3)), box.corners()])


def project_keypoints(box: Box, translation: np.ndarray, quaternion: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """(B, 9, 2) pixels of the keypoints of objects at ``translation`` (B, 3), ``quaternion`` (B, 4) x, y, z, w,
    seen by cameras (B, 4) fx, fy, cx, cy."""
    points = transform_points(object_keypoints(box), np.asarray(translation), np.asarray(quaternion))
    return project_with_intrinsics(points, camera)


def keypoint_pixels(
    object_points: torch.Tensor, translation: torch.Tensor, quaternion: torch.Tensor, camera: torch.Tensor
) -> torch.Tensor:
    """(B, K, 2) pixels of ``object_points`` (K, 3) at poses ``translation`` (B, 3), ``quaternion`` (B, 4) x, y, z, w
    seen by ``camera`` (B, 4) fx, fy, cx, cy: ``project_keypoints`` in torch, for training targets; a camera (B, 12)
    with distortion coefficients gives the pixels where its lens puts them."""
    rotation = roma.unitquat_to_rotmat(F.normalize(quaternion, dim=-1))
    pixels = _project(object_points.to(translation), rotation, translation, camera[:, :PINHOLE_COLUMNS])
    return distort(pixels, camera).to(pixels) if is_distorted(camera) else pixels


def canonical_assignment(
    quaternion: torch.Tensor, translation: torch.Tensor, group: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Of the orientations q * g_k (``group`` (G, 4)) that put the object's corners on the same pixels, the one
    closest to the identity as seen along the viewing ray towards ``translation`` (B, 3): (B, 4) with w >= 0,
    and its index k (B,), so that q = canonical * g_k^-1 (``assigned_orientation``).

    Two images whose corners fall alike then get the same keypoint targets wherever the object is in the image,
    so a keypoint network is never asked to tell the corners apart by anything but their place.
    """
    products = torch.as_tensor(right_products(group), dtype=quaternion.dtype, device=quaternion.device)
    candidates = torch.einsum("kij,bj->bki", products, quaternion)  # (B, G, 4)
    # the angle of ray^-1 * c shrinks as |<ray, c>| grows: the w of ray^-1 * c is that dot product
    closeness = (candidates * ray_rotations(translation)[:, None, :]).sum(dim=-1).abs()
    index = closeness.argmax(dim=1)
    chosen = candidates.gather(1, index[:, None, None].expand(-1, 1, 4))[:, 0]
    return canonical_sign(chosen), index


def assigned_orientation(canonical: torch.Tensor, index: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """The orientation q = canonical * g_index^-1 (B, 4), w >= 0: undoes ``canonical_assignment`` given the
    index a keypoint model's symmetry head names (``group`` (G, 4) as a tensor)."""
    inverse = group.to(canonical)[index] * canonical.new_tensor([-1.0, -1.0, -1.0, 1.0])
    turned = roma.quat_product(canonical, inverse)
    return canonical_sign(turned)


def view_canonical(quaternion: torch.Tensor, translation: torch.Tensor, symmetries: np.ndarray) -> torch.Tensor:
    """Of the equally true orientations q * s_k of a symmetric object (``symmetries`` (K, 4)), the view-canonical
    one (``canonical_assignment``): identical views get identical keypoint targets. Without symmetries the
    quaternion is returned as it is."""
    if is_identity_only(symmetries):
        return quaternion
    return canonical_assignment(quaternion, translation, symmetries)[0]


def solve_pnp(
    pixels: torch.Tensor, object_points: torch.Tensor, camera: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The poses that project ``object_points`` (K, 3) onto ``pixels`` (B, K, 2) with ``camera`` (B, 4), batched;
    a camera (B, 12) with distortion coefficients (cubepose.geometry.distortion) has its pixels undistorted first
    (exactly, on the points alone), and its reprojection error is measured in the distorted image.

    Returns translation (B, 3), quaternion (B, 4) x, y, z, w with w >= 0, and the mean reprojection error
    (B,) in pixels, a confidence: the points of a good detection agree on one pose. Solved by kornia's
    direct linear transform (at least 6 points, not all in one plane) in float64, in OpenCV's frame:
    Unity's y-up camera is its y-down one mirrored, so the object is mirrored too and the rotation found
    is a proper one. ``weights`` (B, K) >= 0, e.g. each keypoint's detection score, weigh the points in the
    refinement, so that a point the network is unsure of (outside the image, hidden) pulls less. A solution
    behind the camera is refined again from a weak-perspective estimate in front of it. A row with a NaN or
    inf among its inputs (a broken network's) gets a NaN pose, and the other rows are solved without it.
    """
    finite = torch.isfinite(pixels).flatten(1).all(dim=1) & torch.isfinite(camera).all(dim=1)
    if weights is not None:
        finite &= torch.isfinite(weights).all(dim=1)
    if not bool(finite.all()):  # the linear algebra below would fail for the whole batch on one such row
        return _solved_where(finite, pixels, object_points, camera, weights)
    observed, lens = pixels.double(), camera.double()
    pixels, camera = (undistort(observed, lens), lens[:, :PINHOLE_COLUMNS]) if is_distorted(lens) else (observed, lens)
    object_points = object_points.double().to(pixels.device)
    batch = pixels.shape[0]
    intrinsics = torch.zeros(batch, 3, 3, dtype=torch.float64, device=pixels.device)
    intrinsics[:, 0, 0], intrinsics[:, 1, 1] = camera[:, 0], camera[:, 1]
    intrinsics[:, 0, 2], intrinsics[:, 1, 2], intrinsics[:, 2, 2] = camera[:, 2], camera[:, 3], 1.0
    flip = Y_FLIP.to(pixels.device)
    mirrored = (object_points * flip).expand(batch, -1, -1)
    # OpenCV's v = cy + fy y' / z with y' = -y: the same pixels as Unity's v = cy - fy y / z
    pose = solve_pnp_dlt(mirrored, pixels, intrinsics)  # (B, 3, 4) [R' | t'] with R' = F R F, t' = F t
    rotation = flip[:, None] * pose[:, :, :3] * flip[None, :]
    translation = pose[:, :, 3] * flip
    if weights is None:
        weights = torch.ones(pixels.shape[:2], dtype=torch.float64, device=pixels.device)
    weights = weights.double()
    rotation, translation = _refine(pixels, object_points, camera, weights, rotation, translation)
    behind = torch.nonzero(translation[:, 2] <= 0)[:, 0]
    if len(behind):  # noisy points can lead the linear solve behind the camera: restart from a weak-perspective pose
        start = _weak_perspective(pixels[behind], object_points, camera[behind], weights[behind])
        again = _refine(pixels[behind], object_points, camera[behind], weights[behind], *start)
        rotation, translation = rotation.index_copy(0, behind, again[0]), translation.index_copy(0, behind, again[1])
    quaternion = roma.rotmat_to_unitquat(rotation)
    quaternion = canonical_sign(quaternion)
    projected = _project(object_points, rotation, translation, camera)
    residuals = (distort(projected, lens) if is_distorted(lens) else projected) - observed
    return translation, quaternion, residuals.norm(dim=-1).mean(dim=-1)


def _solved_where(
    rows: torch.Tensor,
    pixels: torch.Tensor,
    object_points: torch.Tensor,
    camera: torch.Tensor,
    weights: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``solve_pnp`` of the ``rows`` (B,) marked, NaN poses and errors for the others."""
    batch, options = pixels.shape[0], {"dtype": torch.float64, "device": pixels.device}
    translation, quaternion = torch.full((batch, 3), math.nan, **options), torch.full((batch, 4), math.nan, **options)
    error = torch.full((batch,), math.nan, **options)
    index = torch.nonzero(rows)[:, 0]
    if len(index):
        chosen = None if weights is None else weights[index]
        solved = solve_pnp(pixels[index], object_points, camera[index], chosen)
        for whole, part in zip((translation, quaternion, error), solved, strict=True):
            whole.index_copy_(0, index, part)
    return translation, quaternion, error


def _weak_perspective(
    pixels: torch.Tensor, points: torch.Tensor, camera: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A pose in front of the camera from a scaled orthographic fit (B, 3, 3), (B, 3): the keypoints' offsets
    from the first one are a scaled projection of the object points' offsets from the first, fitted by weighted
    least squares; the scale gives the depth. Crude, but a start from which the refinement converges."""
    x = (pixels[..., 0] - camera[:, None, 2]) / camera[:, None, 0]  # normalised, y up (Unity's camera)
    y = (camera[:, None, 3] - pixels[..., 1]) / camera[:, None, 1]
    offsets = torch.stack([x - x[:, :1], y - y[:, :1]], dim=-1)  # (B, K, 2)
    w = (weights.clamp_min(0) + MIN_WEIGHT)[..., None]  # (B, K, 1)
    relative = points - points[:1]
    gram = relative.T @ (w * relative)  # (B, 3, 3): sum_k w_k p_k p_k^T
    fitted = torch.linalg.solve(gram, relative.T @ (w * offsets)).transpose(1, 2)  # (B, 2, 3) = s [r1; r2]
    scale = fitted.norm(dim=-1).mean(dim=-1).clamp_min(1e-9)
    first = F.normalize(fitted[:, 0], dim=-1)
    second = F.normalize(fitted[:, 1] - (fitted[:, 1] * first).sum(-1, keepdim=True) * first, dim=-1)
    rotation = torch.stack([first, second, torch.cross(first, second, dim=-1)], dim=1)
    depth = 1 / scale
    first_point = torch.stack([x[:, 0] * depth, y[:, 0] * depth, depth], dim=-1)
    return rotation, first_point - rotation @ points[0]


def _project(
    points: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor, camera: torch.Tensor
) -> torch.Tensor:
    """Object points (K, 3) under poses (B, 3, 3), (B, 3) -> pixels (B, K, 2) (geometry.pinhole_pixels)."""
    placed = points @ rotation.transpose(-1, -2) + translation[..., None, :]
    return torch.stack(pinhole_pixels(placed, camera), dim=-1)


def _jacobian(
    points: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor, camera: torch.Tensor
) -> torch.Tensor:
    """(B, K, 2, 6) derivatives of each point's pixel (``_project``) with respect to a rotation vector w applied
    in the object's frame (R exp(w)) and a translation step, at zero: closed form, so the refinement costs a
    few batched products instead of an autograd pass per step."""
    placed = points @ rotation.transpose(-1, -2) + translation[..., None, :]  # (B, K, 3) in the camera frame
    x, y, z = placed.unbind(-1)
    fx, fy = camera[:, 0:1], camera[:, 1:2]
    zero = torch.zeros_like(x)
    # d(u, v) / d(camera-frame point): u = cx + fx x / z, v = cy - fy y / z
    projection = torch.stack(
        [torch.stack([fx / z, zero, -fx * x / z**2], -1), torch.stack([zero, -fy / z, fy * y / z**2], -1)], -2
    )  # (B, K, 2, 3)
    # d(R exp(w) p) / dw = -R [p]x, d(p + t) / dt = I
    skew = torch.zeros(*points.shape[:-1], 3, 3, dtype=points.dtype, device=points.device)
    px, py, pz = points.unbind(-1)
    skew[..., 0, 1], skew[..., 0, 2], skew[..., 1, 2] = -pz, py, -px
    skew = skew - skew.transpose(-1, -2)  # [p]x (K, 3, 3)
    turning = -rotation[:, None] @ skew  # (B, K, 3, 3)
    moving = torch.eye(3, dtype=points.dtype, device=points.device).expand_as(turning)
    return projection @ torch.cat([turning, moving], dim=-1)


def _refine(
    pixels: torch.Tensor,
    points: torch.Tensor,
    camera: torch.Tensor,
    weights: torch.Tensor,
    rotation: torch.Tensor,
    translation: torch.Tensor,
    iterations: int = REFINE_ITERATIONS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Levenberg-Marquardt on the (``weights``-weighted) reprojection error from the linear solution, batched:
    the DLT minimises an algebraic error, which noisy detections bias (centimetres at 0.5 px noise); a few steps
    fix that. A step that does not lower an example's error is rejected and its damping raised, so a poor
    linear start (noisy keypoints of a small object) cannot diverge."""
    scale = (weights.clamp_min(0) + MIN_WEIGHT).sqrt()[..., None]  # (B, K, 1): residuals weighed by sqrt(w)

    def residuals(rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
        return ((_project(points, rotation, translation, camera) - pixels) * scale).flatten(1)  # (B, 2K)

    identity = torch.eye(6, dtype=torch.float64, device=pixels.device)
    damping = torch.full((len(pixels), 1, 1), INITIAL_DAMPING, dtype=torch.float64, device=pixels.device)
    r = residuals(rotation, translation)
    cost = r.square().sum(dim=1)
    cost = torch.where(cost.isfinite(), cost, torch.full_like(cost, torch.inf))
    for _ in range(iterations):
        j = _jacobian(points, rotation, translation, camera) * scale[..., None]  # (B, K, 2, 6)
        j = j.flatten(1, 2)  # (B, 2K, 6), rows in the residuals' order
        normal = j.transpose(1, 2) @ j
        diagonal = torch.diag_embed(normal.diagonal(dim1=1, dim2=2)) + 1e-12 * identity
        step = -torch.linalg.solve(normal + damping * diagonal, j.transpose(1, 2) @ r[..., None])[..., 0]
        turned = rotation @ roma.rotvec_to_rotmat(step[:, :3])
        moved = translation + step[:, 3:]
        new_r = residuals(turned, moved)
        new_cost = new_r.square().sum(dim=1)
        better = new_cost < cost  # False for NaN
        rotation = torch.where(better[:, None, None], turned, rotation)
        translation = torch.where(better[:, None], moved, translation)
        r = torch.where(better[:, None], new_r, r)
        cost = torch.where(better, new_cost, cost)
        damping = torch.where(better[:, None, None], damping / 10, damping * 10)
    return rotation, translation
