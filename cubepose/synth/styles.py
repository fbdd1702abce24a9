"""Looks a scene can be rendered in: today's randomisation, and held-apart looks that test transfer.

A style changes how a sampled scene looks, never where the objects are: it draws from its own generator
(seeded by (seed, index, 2)), after the scene's own draws, so a test set of one seed holds the same poses in
every style and only the look differs. The held-apart looks are built from pieces the training
randomisation never renders (a table on legs over a floor, an articulated arm, cast shadows, a sky,
photographs, a camera's optics and processing, letters on the faces), so a model trained on ``randomised``
renders meets them first at test time.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import cv2
import numpy as np

from cubepose.geometry.rotations import axis_angle_quaternions
from cubepose.synth.scene import STYLES, Box, Scene

__all__ = ["STYLES", "letter_faces", "photographs", "style_image", "style_scene"]

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "brick", "grass", "gravel", "camera", "moon", "coins")
PHOTO_TEXTURE_SIZE = 256
TABLE_HEIGHT = 0.75  # metres from the floor to the table top (a structured scene's)
LETTERS = "ABCDEF"


def style_scene(scene: Scene, style: str, rng: np.random.Generator) -> Scene:
    """``scene`` in ``style``'s look; the objects, camera and sensor settings are kept."""
    if style == "structured":
        return _structured(scene, rng)
    if style == "photos":
        return _photographed(scene, rng)
    return scene


def style_image(image: np.ndarray, style: str, rng: np.random.Generator) -> np.ndarray:
    """The rendered uint8 (H, W, 3) ``image`` as ``style``'s camera records it (only ``camera`` changes it)."""
    return _through_a_camera(image, rng) if style == "camera" else image


# -- structured: a room with a table, an arm and shadows ------------------------------------------------


def _table_axes(up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit directions along the table (normal ``up``), the first as near the camera's x as it can be."""
    along = np.array([1.0, 0.0, 0.0]) - up * up[0]
    along /= np.linalg.norm(along)
    return along, np.cross(along, up)


def _turned(direction: np.ndarray) -> np.ndarray:
    """The quaternion (x, y, z, w; w >= 0) of the shortest turn of a part's y axis onto the unit ``direction``."""
    local = np.array([0.0, 1.0, 0.0])
    axis = np.cross(local, direction)
    angle = math.atan2(float(np.linalg.norm(axis)), float(local @ direction))
    if np.linalg.norm(axis) < 1e-9:  # along y already, or opposite: turn about x
        axis = np.array([1.0, 0.0, 0.0])
    return axis_angle_quaternions(axis / np.linalg.norm(axis), angle)


def _arm(rng: np.random.Generator, foot: np.ndarray, up: np.ndarray) -> list[Box]:
    """An articulated arm standing at ``foot`` on the table: a base, three links and their joints."""
    along, across = _table_axes(up)
    grey = np.full(3, rng.uniform(0.6, 0.9))
    joint_colour = np.array([0.15, 0.25, 0.6]) * rng.uniform(0.7, 1.3)
    parts = [Box(foot + up * 0.05, _turned(up), np.array([0.13, 0.1, 0.13]), grey, "cylinder")]
    start, direction = foot + up * 0.1, up
    azimuth = rng.uniform(0, 2 * np.pi)
    heading = np.cos(azimuth) * along + np.sin(azimuth) * across
    for length, diameter in ((0.15, 0.09), (0.24, 0.07), (0.21, 0.06)):
        end = start + direction * length
        parts.append(
            Box((start + end) / 2, _turned(direction), np.array([diameter, length, diameter]), grey, "cylinder")
        )
        joint = np.full(3, diameter * 1.25)
        parts.append(Box(end, _turned(direction), joint, joint_colour))
        bend = rng.uniform(0.3, 1.4)  # the next link's angle from the table's normal, below 90 deg: it rises
        direction = np.cos(bend) * up + np.sin(bend) * heading
        start = end
    return parts


def _structured(scene: Scene, rng: np.random.Generator) -> Scene:
    """A finite table on legs over a tiled floor, a sky behind, an arm beside the object, lights with shadows."""
    up = scene.up
    along, across = _table_axes(up)
    width, depth = rng.uniform(1.2, 2.2), rng.uniform(0.9, 1.6)
    centre = scene.table_centre + along * rng.uniform(-0.25, 0.25) * width + across * rng.uniform(-0.25, 0.25) * depth
    legs = []
    for sign_a in (-1, 1):
        for sign_b in (-1, 1):
            corner = centre + along * sign_a * (width / 2 - 0.06) + across * sign_b * (depth / 2 - 0.06)
            legs.append(
                Box(corner - up * TABLE_HEIGHT / 2, _turned(up), np.array([0.06, TABLE_HEIGHT, 0.06]), np.full(3, 0.3))
            )
    angle = rng.uniform(0, 2 * np.pi)
    foot = scene.table_centre + rng.uniform(0.25, 0.45) * (np.cos(angle) * along + np.sin(angle) * across)
    wood = np.clip(np.array([150, 110, 70]) * rng.uniform(0.6, 1.3) + rng.normal(0, 8, size=(16, 16, 3)), 0, 255)
    planks = np.repeat(wood.mean(axis=1, keepdims=True), 16, axis=1)  # grain: one tone along each plank
    fill = rng.uniform() < 0.5
    elevation, azimuth = np.radians(rng.uniform(30, 70)), rng.uniform(0, 2 * np.pi)
    towards = np.cos(elevation) * (np.cos(azimuth) * along + np.sin(azimuth) * across) + np.sin(elevation) * up
    return replace(
        scene,
        table_centre=centre,
        table_size=np.array([width, depth]),
        table_texture=planks.astype(np.uint8),
        table_tiles=1.0,
        background_texture=_sky(rng),
        background_index=-1,
        fixtures=[*legs, *_arm(rng, foot, up)],
        floor_centre=centre - up * TABLE_HEIGHT,
        floor_texture=_tiles(rng),
        fill_light_direction=towards if fill else None,
        fill_light_colour=np.full(3, rng.uniform(0.2, 0.5)) if fill else None,
        shadows=True,
    )


def _sky(rng: np.random.Generator) -> np.ndarray:
    """A vertical gradient from a horizon's pale blue to a deeper blue above (rows top to bottom)."""
    top, horizon = np.array([70, 120, 200]) * rng.uniform(0.8, 1.2), np.array([200, 215, 230]) * rng.uniform(0.9, 1.1)
    t = np.linspace(0, 1, 32)[:, None, None]
    return np.clip(np.broadcast_to(top * (1 - t) + horizon * t, (32, 4, 3)), 0, 255).astype(np.uint8)


def _tiles(rng: np.random.Generator) -> np.ndarray:
    """A floor of square tiles with grout lines, one base colour (repeats across the floor)."""
    base = rng.uniform(90, 200) * (1 + rng.uniform(-0.1, 0.1, size=3))
    tile = np.broadcast_to(base, (16, 16, 3)).copy()
    tile[:1], tile[:, :1] = base * 0.5, base * 0.5
    return np.clip(tile, 0, 255).astype(np.uint8)


# -- photos: real photographs behind and under the object ---------------------------------------------


@functools.lru_cache(maxsize=1)
def photographs() -> tuple[np.ndarray, ...]:
    """scikit-image's bundled real photographs as uint8 RGB (grey ones repeated over the three channels)."""
    import skimage.data

    photos = []
    for name in PHOTOS:
        image = np.asarray(getattr(skimage.data, name)(), dtype=np.uint8)
        photos.append(np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3])
    return tuple(photos)


def _crop(rng: np.random.Generator, photo: np.ndarray) -> np.ndarray:
    """A random square crop of half to all of ``photo``'s shorter side, as a PHOTO_TEXTURE_SIZE texture."""
    height, width = photo.shape[:2]
    side = int(min(height, width) * rng.uniform(0.5, 1.0))
    top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    square = photo[top : top + side, left : left + side]
    return cv2.resize(square, (PHOTO_TEXTURE_SIZE,) * 2, interpolation=cv2.INTER_AREA)


def _photographed(scene: Scene, rng: np.random.Generator) -> Scene:
    """One photograph behind the scene, another on the table (once across it)."""
    photos = photographs()
    behind, below = rng.choice(len(photos), size=2, replace=False)
    return replace(
        scene,
        background_texture=_crop(rng, photos[behind]),
        background_index=-1,
        table_texture=_crop(rng, photos[below]),
        table_tiles=float(rng.uniform(1.0, 2.0)),
    )


# -- camera: optics, exposure and processing -------------------------------------------------------------


def _through_a_camera(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Defocus or motion blur, exposure and white balance, vignetting, shot and read noise, then JPEG."""
    height, width = image.shape[:2]
    pixels = image.astype(np.float32) / 255.0
    if rng.uniform() < 0.5:  # defocus: a disc
        radius = rng.uniform(0.5, 2.0)
        size = 2 * math.ceil(radius) + 1
        grid = np.arange(size) - size // 2
        disc = (grid[:, None] ** 2 + grid[None] ** 2 <= radius**2 + 0.25).astype(np.float32)
        pixels = cv2.filter2D(pixels, -1, disc / disc.sum(), borderType=cv2.BORDER_REFLECT)
    else:  # motion: a line
        length, angle = int(rng.integers(3, 10)), rng.uniform(0, np.pi)
        kernel = np.zeros((length, length), np.float32)
        middle = (length - 1) / 2
        for t in np.linspace(-middle, middle, 4 * length):
            kernel[round(middle + t * np.sin(angle)), round(middle + t * np.cos(angle))] = 1
        pixels = cv2.filter2D(pixels, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)
    exposure, gains = rng.uniform(0.6, 1.5), rng.uniform(0.8, 1.2, size=3).astype(np.float32)
    pixels = pixels * exposure * gains
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = np.hypot((cols - width / 2) / (width / 2), (rows - height / 2) / (height / 2)) / math.sqrt(2)
    pixels *= (1 - rng.uniform(0.1, 0.45) * radius**2)[..., None]
    shot, read = rng.uniform(0.002, 0.02), rng.uniform(0.002, 0.015)
    pixels = pixels + rng.normal(size=pixels.shape).astype(np.float32) * np.sqrt(
        shot * np.clip(pixels, 0, None) + read**2
    )
    recorded = (np.clip(pixels, 0, 1) ** (1 / rng.uniform(0.9, 1.1)) * 255 + 0.5).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", recorded[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 91))])
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1].copy()


# -- letters: the object's faces ---------------------------------------------------------------------------


def letter_faces() -> list[np.ndarray]:
    """Six flat faces in the die's colours, each with a black letter A-F, upright as seen from outside."""
    from PIL import Image, ImageDraw, ImageFont

    from cubepose.synth.textures import FACE_COLOURS, PHOTO_FACE_SIZE

    font = ImageFont.load_default(size=int(PHOTO_FACE_SIZE * 0.7))
    faces = []
    for colour, letter in zip(FACE_COLOURS, LETTERS, strict=True):
        face = Image.new("RGB", (PHOTO_FACE_SIZE,) * 2, tuple(int(c) for c in colour))
        draw = ImageDraw.Draw(face)
        draw.text((PHOTO_FACE_SIZE / 2, PHOTO_FACE_SIZE / 2), letter, fill=(15, 15, 15), font=font, anchor="mm")
        faces.append(np.asarray(face))
    return faces
