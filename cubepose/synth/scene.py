"""Random scenes for domain randomisation: what is where, how it is lit, and how the sensor degrades.

Everything is sampled in the camera frame (Unity's: x right, y up, z forward) from one
``numpy.random.Generator`` per image, so a scene depends only on (seed, index).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from numbers import Real

import numpy as np

from cubepose.geometry.camera import Camera
from cubepose.geometry.object import Box as ObjectBox
from cubepose.geometry.object import default_dimensions
from cubepose.geometry.projection import (
    intrinsics_from_fov,
    projection_from_fov,
    projection_from_intrinsics,
    view_slopes,
)
from cubepose.geometry.rotations import axis_angle_quaternions, quaternion_multiply, quaternion_to_matrix
from cubepose.synth.textures import FACE_NAMES, FACE_STYLES

ROTATION_MODES = ("yaw", "full")
# The looks cubepose.synth.styles renders: the training randomisation, then the held-apart test looks
STYLES = {
    "randomised": "the generator's randomisation: blotchy table, noise background, boxes, one light, no shadows",
    "structured": "a table on four legs over a tiled floor under a sky, an articulated arm of cylinders and boxes "
    "beside the object, one or two lights, shadows cast on the table",
    "photos": "real photographs (scikit-image's bundled images) as the background and on the table",
    "camera": "what a real camera adds: defocus or motion blur, exposure, white balance, vignetting, "
    "intensity-dependent noise and JPEG compression",
    "letters": "the die's face colours, flat, each marked with a black letter (A-F) instead of pips and borders",
}
X_AXIS, Y_AXIS, Z_AXIS = np.eye(3)
NEAR_PLANE = 0.05  # metres: the renderer's near plane (gl_renderer.NEAR) clips anything nearer
# The default cube's nearest corner (half-diagonal 0.087 m) must stay in front of the near plane; a larger
# object is checked against it too (``_check_object``).
NEAREST_DISTANCE = 0.15
# Well inside the renderer's far plane (100 m), table included; the cube is under half a pixel there at 224 px.
FARTHEST_DISTANCE = 50.0
DISTANCE_LIMITS = (
    f"the renderer clips the cube closer than {NEAREST_DISTANCE} m, and it is under a pixel beyond "
    f"{FARTHEST_DISTANCE:g} m"
)
PLACEMENT_TRIES = 50  # draws for a free place per extra instance of the object
OBJECT_GAP = 1.05  # instances' bounding spheres keep 5 % of a diameter apart
MAX_OBJECTS = 32  # instances per image; more could not keep apart in a useful view
MAX_DISTRACTORS = 100  # one draw call each per image; far more would bury the cube and only slow rendering
DISTRACTOR_EDGES = (0.04, 0.15)  # metres, range of each distractor box's edge lengths
ASPECT_LIMITS = (0.25, 4.0)  # width / height: beyond these the squeeze to the network's square input is extreme
MAX_PRINCIPAL_JITTER = 0.25  # share of a side: the cube's allowed region (``margin``) must stay in the image


@dataclass(frozen=True)
class Rig:
    """A camera fixed over a table as a real cell stands (metres): the object lies on the table top within an arm's
    reach of the arm's base, seen by a camera ``height`` above that top and ``back`` behind the base.

    The world frame has y up and its origin at the arm's base on the table top; the camera looks along +z,
    pitched and rolled by the scene options' ``tilt_deg`` and ``roll_deg``. Positions out of view or out of the
    distance range are drawn again (``PLACEMENT_TRIES``); a camera that sees too little of the reach then
    places the object where a random pixel's ray meets the table.
    """

    height: float  # camera's optical centre above the table top
    back: float  # horizontally from the camera to the arm's base
    reach: tuple[float, float]  # the object's centre from the arm's base, along the table
    base: tuple[float, float] = (0.128, 0.09)  # the arm's base, a cylinder: diameter and height

    def camera_position(self) -> np.ndarray:
        """The camera's optical centre in the world frame."""
        return np.array([0.0, self.height, -self.back])

    def place(
        self,
        rng: np.random.Generator,
        rotate: np.ndarray,
        lift: float,
        view: tuple[np.ndarray, np.ndarray],
        margin: float,
        distance: tuple[float, float],
    ) -> np.ndarray | None:
        """The object's centre in the camera frame (``rotate``: world to camera; ``lift``: its centre above the
        table), inside ``margin`` of the view and the ``distance`` range, or None where no place is found."""
        middle, half = view
        for _ in range(PLACEMENT_TRIES):
            angle, radius = rng.uniform(0, 2 * np.pi), rng.uniform(*self.reach)
            world = np.array([radius * np.sin(angle), lift, radius * np.cos(angle)])
            centre = rotate @ (world - self.camera_position())
            if _seen(centre, middle, half * margin, distance):
                return centre
        up = rotate @ Y_AXIS
        plane = up @ (rotate @ (np.array([0.0, lift, 0.0]) - self.camera_position()))  # the centres' plane
        for _ in range(PLACEMENT_TRIES):
            ray = np.array([*(rng.uniform(-1, 1, size=2) * half * margin + middle), 1.0])
            if ray @ up < 0 and _seen(ray * plane / (ray @ up), middle, half * margin, distance):
                return ray * plane / (ray @ up)
        return None

    def base_in(self, world_to_camera: np.ndarray) -> Box:
        """The arm's base standing at the world's origin, in the camera frame (``world_to_camera``: a quaternion)."""
        diameter, height = self.base
        centre = quaternion_to_matrix(world_to_camera) @ (np.array([0.0, height / 2, 0.0]) - self.camera_position())
        size = np.array([diameter, height, diameter])
        return Box(centre, world_to_camera, size, np.array([0.7, 0.7, 0.72]), "cylinder")


def _seen(centre: np.ndarray, middle: np.ndarray, half: np.ndarray, distance: tuple[float, float]) -> bool:
    """Whether a camera-frame point lies within ``half`` of the view's ``middle`` (slopes) and the distance range."""
    depth = centre[2]
    return bool(distance[0] <= depth <= distance[1] and np.all(np.abs(centre[:2] / depth - middle) <= half))


@dataclass(frozen=True)
class SceneOptions:
    """The ranges a preset randomises within (distances in metres, angles in degrees)."""

    distance: tuple[float, float] = (0.3, 0.55)  # camera to cube centre, along the optical axis
    tilt_deg: tuple[float, float] = (20.0, 50.0)  # camera pitched down from horizontal
    roll_deg: float = 3.0  # camera roll jitter, +-
    vertical_fov_deg: tuple[float, float] = (60.0, 60.0)  # Unity's default camera, for square images
    margin: float = 0.6  # share of the half-image (per axis, about the image centre) the cube centre may reach
    distractors: tuple[int, int] = (0, 3)  # boxes on the table besides the cube
    table_size: float = 4.0  # metres, edge of the square table
    rotation: str = "yaw"  # "yaw": about the table's normal, as Unity's UR3 demo; "full": any
    faces: str | tuple[str, ...] = "die"  # "die", "plain" (no markings) or six image files, +x -x +y -y +z -z
    noise: tuple[float, float] = (0.0, 6.0)  # sensor noise std, in 0-255 units
    blur: tuple[float, float] = (0.0, 0.7)  # Gaussian blur sigma, in pixels
    dimensions: tuple[float, float, float] = field(default_factory=default_dimensions)  # the object's x y z edges (m)
    camera: Camera | None = None  # the camera in pixels; None: a centred one of vertical_fov_deg, square images
    objects: tuple[int, int] = (1, 1)  # instances of the object per image (MIN MAX), non-overlapping
    empty_fraction: float = 0.0  # share of images with no instance at all
    aspect: tuple[float, float] = (1.0, 1.0)  # image width / height, drawn per image (range: randomised cameras)
    principal_jitter: float = 0.0  # the principal point moves up to this share of the width and height off centre
    style: str = "randomised"  # the look (cubepose.synth.styles): today's randomisation or a held-apart test look
    rig: Rig | None = None  # a camera fixed over the table (Unity's UR3 cell): the object is placed on the table

    def __post_init__(self) -> None:
        """Refuse impossible ranges when the options are made, so no caller (CLI or Python) renders with them."""
        for name in ("faces", "objects"):  # lists from the Python API or a manifest, compared as tuples
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        check_scene_options(self)
        object.__setattr__(self, "dimensions", ObjectBox(self.dimensions).dimensions)  # floats, as recorded


# The flags that randomise a camera, by SceneOptions field: --camera gives a fixed one instead.
CAMERA_FLAGS = (("--fov", "vertical_fov_deg"), ("--aspect", "aspect"), ("--principal-jitter", "principal_jitter"))


def _numbers(values: tuple) -> bool:
    """Whether every value is a finite real number (NaN and inf are refused: NaN passes no comparison)."""
    return all(isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def _check_range(
    name: str, bounds: tuple, allowed: tuple[float, float], unit: str, fix: str, strict: bool = False
) -> None:
    """Refuse ``bounds`` unless it is a pair LO <= HI of finite numbers in ``allowed`` (``strict``: not on its ends).

    ``name`` is the flag (or field) the user sets, ``fix`` says what to give instead.
    """
    if not (isinstance(bounds, tuple | list) and len(bounds) == 2 and _numbers(tuple(bounds))):
        raise ValueError(f"{name} must be finite numbers ({unit}), got {_shown(bounds)}; {fix}")
    (low, high), (lowest, highest) = bounds, allowed
    if low > high:
        raise ValueError(f"{name}: the range LO HI needs LO <= HI, got {low:g} > {high:g}; {fix}")
    inside = lowest < low and high < highest if strict else lowest <= low and high <= highest
    if not inside:
        where = "strictly between" if strict else "between"
        raise ValueError(f"{name} must be {where} {lowest:g} and {highest:g} {unit}, got {_shown(bounds)}; {fix}")


def _as_tuple(value: object) -> object:
    """A list as a tuple (the Python API and manifests give lists), anything else as it is."""
    return tuple(value) if isinstance(value, list) else value


def _shown(bounds: object) -> str:
    """A range as the user typed it: ``60`` for (60, 60), ``50 70`` for (50, 70), anything else as its repr."""
    if isinstance(bounds, tuple | list) and len(bounds) == 2 and str(bounds[0]) == str(bounds[1]):
        return str(bounds[0])
    if isinstance(bounds, tuple | list):
        return " ".join(map(str, bounds))
    return repr(bounds)


def _check_value(name: str, value: float, allowed: tuple[float, float], unit: str, fix: str) -> None:
    """Refuse a single number outside ``allowed`` (ends included), or one that is not finite."""
    _check_range(name, (value, value), allowed, unit, fix)


def _check_distractors(bounds: tuple) -> None:
    """At least LO and at most HI distractor boxes: whole numbers with 0 <= LO <= HI <= MAX_DISTRACTORS."""
    fix = "the presets use up to 3, 0 gives none"
    whole = isinstance(bounds, tuple | list) and len(bounds) == 2
    if not (whole and all(isinstance(n, int | np.integer) and not isinstance(n, bool) for n in bounds)):
        raise ValueError(f"--max-distractors (distractors) must be two whole numbers LO HI, got {bounds!r}; {fix}")
    if not 0 <= bounds[1] <= MAX_DISTRACTORS:
        raise ValueError(f"--max-distractors must be between 0 and {MAX_DISTRACTORS}, got {bounds[1]}; {fix}")
    _check_range("SceneOptions.distractors", bounds, (0, MAX_DISTRACTORS), "boxes", fix)


def _check_objects(bounds: tuple) -> None:
    """Between MIN and MAX instances of the object per image: whole numbers with 1 <= MIN <= MAX <= MAX_OBJECTS."""
    fix = f"give MIN MAX with 1 <= MIN <= MAX <= {MAX_OBJECTS}, e.g. --objects 1 4 (--empty-fraction adds empty images)"
    whole = isinstance(bounds, tuple | list) and len(bounds) == 2
    if not (whole and all(isinstance(n, int | np.integer) and not isinstance(n, bool) for n in bounds)):
        raise ValueError(f"--objects must be two whole numbers MIN MAX, got {bounds!r}; {fix}")
    _check_range("--objects", bounds, (1, MAX_OBJECTS), "instances", fix)


def check_scene_options(options: SceneOptions) -> None:
    """Refuse ranges that cannot make an image, naming the ``cubepose generate`` flag (or field) and what is allowed.

    Called when a SceneOptions is made, so the Python API is guarded as well as the command line.
    """
    fov_fix = "give an angle like 60 (Unity's default), or a range LO HI with 0 < LO <= HI < 180"
    _check_range("--fov", options.vertical_fov_deg, (0, 180), "degrees", fov_fix, strict=True)
    allowed = (NEAREST_DISTANCE, FARTHEST_DISTANCE)
    _check_range("--min-distance/--max-distance", options.distance, allowed, "metres", DISTANCE_LIMITS)
    _check_distractors(options.distractors)
    _check_objects(options.objects)
    _check_value(
        "--empty-fraction", options.empty_fraction, (0, 1), "(a share of the images)", "0.1 leaves a tenth empty"
    )
    if options.rotation not in ROTATION_MODES:
        raise ValueError(f"--rotation must be one of {', '.join(ROTATION_MODES)}, got {options.rotation!r}")
    _check_range("SceneOptions.tilt_deg", options.tilt_deg, (-90, 90), "degrees", "the camera's pitch down")
    _check_range("SceneOptions.noise", options.noise, (0, 255), "grey levels of 0-255", "0 turns sensor noise off")
    _check_range("SceneOptions.blur", options.blur, (0, 10), "pixels", "0 turns blur off")
    _check_value("SceneOptions.roll_deg", options.roll_deg, (0, 180), "degrees", "it is a +- jitter, 3 by default")
    _check_value("SceneOptions.margin", options.margin, (0, 1), "(a share of the half-image)", "0.6 by default")
    _check_value("SceneOptions.table_size", options.table_size, (0.01, 1000), "metres", "4 by default")
    _check_object(options.dimensions, options.distance[0])
    _check_faces(options.faces)
    _check_style(options)
    _check_range("--aspect", options.aspect, ASPECT_LIMITS, "(width / height)", "1 gives square images, 1.6 16:10")
    jitter_fix = "0 keeps it centred, 0.1 moves it up to a tenth of the image"
    _check_value("--principal-jitter", options.principal_jitter, (0, MAX_PRINCIPAL_JITTER), "of a side", jitter_fix)
    if options.camera is not None:
        if options.camera.size is None:
            raise ValueError("SceneOptions.camera must state its image size (width and height) to render with")
        defaults = {f.name: f.default for f in fields(SceneOptions)}
        chosen = [flag for flag, name in CAMERA_FLAGS if _as_tuple(getattr(options, name)) != defaults[name]]
        if chosen:
            raise ValueError(
                f"--camera sets the camera and {' and '.join(chosen)} randomise one; give --camera alone, or leave "
                "it out"
            )


def _check_faces(faces: str | tuple) -> None:
    """Refuse faces that are neither a style nor six file names nor one unfolded net (the files themselves are
    opened by the generator)."""
    files = isinstance(faces, tuple) and all(isinstance(name, str) for name in faces)
    if faces in FACE_STYLES or (files and len(faces) in (1, 6)):
        return
    given = " ".join(map(str, faces)) if isinstance(faces, tuple) else repr(faces)
    count = f" ({len(faces)} files)" if files else ""
    raise ValueError(
        f"--faces takes {' or '.join(FACE_STYLES)}, six image files in the order {' '.join(FACE_NAMES)}, or one "
        f"image of the unfolded net (a 4:3 cross); got {given}{count}"
    )


def _check_style(options: SceneOptions) -> None:
    """Refuse an unknown look, and the letters look on the user's own faces (it replaces the die's markings)."""
    if options.style not in STYLES:
        raise ValueError(f"--style must be one of {', '.join(STYLES)}, got {options.style!r}")
    if options.style == "letters" and options.faces != "die":
        raise ValueError("--style letters marks the die's coloured faces with letters: leave out --faces")


def _check_object(dimensions: tuple, nearest: float) -> None:
    """Refuse a box that is no box, or whose bounding sphere at the nearest distance crosses the near plane."""
    try:
        radius = ObjectBox(dimensions).radius
    except ValueError as err:
        raise ValueError(f"--object-dimensions: {err}") from None
    if nearest - radius <= NEAR_PLANE:
        raise ValueError(
            f"--object-dimensions {' '.join(map(str, dimensions))}: the box reaches {radius:.3g} m from its centre, "
            f"so at --min-distance {nearest:g} it crosses the renderer's near plane ({NEAR_PLANE} m); "
            f"give --min-distance above {NEAR_PLANE + radius:.3g}"
        )


# Unity's UR3 pick-and-place tutorial as its captures record it: the camera 1.74 m above the floor and 1.91 m behind
# the arm's base, pitched 15 deg down; the table top (the arm's base) 0.77 m up; the cube within 0.2-0.4 m of the
# base (Unity's RobotArmObjectPositionRandomizer), so 1.7-2.5 m from the camera.
UR3_CELL = Rig(height=1.74 - 0.77, back=1.91, reach=(0.2, 0.4))
PRESETS = {
    "default": SceneOptions(),
    "ur3": SceneOptions(
        distance=(1.6, 2.6), tilt_deg=(13.0, 17.0), roll_deg=1.0, margin=0.6, table_size=10.0, rig=UR3_CELL
    ),
    # The cube anywhere in the view 1.7-2.5 m away on a table under it, the camera pitched 12-18 deg: no cell
    "ur3-free": SceneOptions(distance=(1.7, 2.5), tilt_deg=(12.0, 18.0), roll_deg=1.0, margin=0.5, table_size=10.0),
}
# The camera a preset renders with when no --camera, --image-size or --fov is given (None: 128 px square, 60 deg).
# Unity's UR3 tutorial renders 650 x 400 with the tutorial scene's camera of 60 deg vertical field of view (Unity's
# default); fits of its captures' labels give 49-61 deg: --fov 49 61 --aspect 1.625 --image-size 400 covers them.
PRESET_CAMERAS: dict[str, Camera | None] = {
    "default": None,
    "ur3": Camera.from_fov(60.0, 650, 400),
    "ur3-free": Camera.from_fov(60.0, 650, 400),
}


@dataclass(frozen=True)
class Box:
    """A solid in the camera frame: centre, rotation (x, y, z, w), extent along its x y z axes (metres) and RGB
    tint in [0, 1]. ``shape`` "box", or "cylinder": its axis along y, its diameter the x extent."""

    translation: np.ndarray
    quaternion: np.ndarray
    size: np.ndarray
    colour: np.ndarray
    shape: str = "box"


@dataclass(frozen=True)
class Scene:
    """One image's sampled scene. ``up`` is the table normal in the camera frame; ``objects`` the instances of
    the object (one by default; none in an empty image)."""

    objects: list[Box]
    vertical_fov_deg: float | None  # the centred camera's field of view; None when ``camera`` is given in pixels
    up: np.ndarray
    table_centre: np.ndarray
    table_texture: np.ndarray  # small uint8 RGB, magnified smoothly by the renderer
    table_tiles: float
    table_size: float | np.ndarray  # metres: the square table's edge, or its (along, across) extent
    background_texture: np.ndarray
    background_index: int  # which user background image, if any
    light_direction: np.ndarray  # towards the light, camera frame
    light_colour: np.ndarray
    ambient: np.ndarray
    noise: float
    blur: float
    noise_seed: int  # seeds the per-pixel noise
    distractors: list[Box] = field(default_factory=list)
    camera: Camera | None = None  # the camera in pixels, when the options give one
    fixtures: list[Box] = field(default_factory=list)  # the rest of a structured scene: table legs, an arm's parts
    floor_centre: np.ndarray | None = None  # a floor parallel to the table, with its own texture
    floor_texture: np.ndarray | None = None
    fill_light_direction: np.ndarray | None = None  # a second light, towards it (camera frame)
    fill_light_colour: np.ndarray | None = None
    shadows: bool = False  # the first light casts the solids' shadows onto the table

    @property
    def cube(self) -> Box:
        """The first instance of the object (a one-object scene's only one)."""
        if not self.objects:
            raise ValueError("this scene holds no instance of the object (an empty image)")
        return self.objects[0]

    def projection(self, width: int, height: int) -> np.ndarray:
        """(4,) Unity's projection entries m00, m11 and the principal point's shift m02, m12 (geometry) for
        ``width`` x ``height`` images: the field of view's, or the given camera's (which must be of that size)."""
        if self.camera is None:
            return np.array([*projection_from_fov(self.vertical_fov_deg, width, height), 0.0, 0.0])
        if (width, height) != self.camera.size:
            raise ValueError(f"a {self.camera.width}x{self.camera.height} camera cannot make {width}x{height} images")
        return projection_from_intrinsics(self.camera.intrinsics, width, height)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds)) if bounds[1] > bounds[0] else float(bounds[0])


def camera_from_world(tilt_deg: float, roll_deg: float) -> np.ndarray:
    """Quaternion turning world vectors (y up) into the frame of a camera pitched down and rolled."""
    pitch = axis_angle_quaternions(X_AXIS, np.radians(-tilt_deg))
    roll = axis_angle_quaternions(Z_AXIS, np.radians(roll_deg))
    return quaternion_multiply(roll, pitch)


def sample_camera(rng: np.random.Generator, options: SceneOptions, heights: tuple[int, int]) -> Camera:
    """One image's randomised camera: height in ``heights`` (pixels, ends included), width from the aspect range,
    square pixels of a vertical field of view in range, and the principal point jittered off the centre."""
    height = int(rng.integers(heights[0], heights[1] + 1))
    width = round(height * _uniform(rng, options.aspect))
    fx, fy, cx, cy = intrinsics_from_fov(_uniform(rng, options.vertical_fov_deg), width, height)
    shift = rng.uniform(-1, 1, size=2) * options.principal_jitter * np.array([width, height])
    return Camera.from_values((width, height, fx, fy, cx + shift[0], cy + shift[1]))


def sample_scene(
    rng: np.random.Generator, options: SceneOptions, backgrounds: int = 0, camera: Camera | None = None
) -> Scene:
    """A random scene: the object (a box of ``options.dimensions``) on a table inside the view, distractors,
    lights, background, sensor. ``camera`` (one drawn by ``sample_camera``) replaces the options' camera."""
    shape = ObjectBox(options.dimensions)
    camera = options.camera if camera is None else camera
    fov = _uniform(rng, options.vertical_fov_deg) if camera is None else None
    world_to_camera = camera_from_world(_uniform(rng, options.tilt_deg), rng.uniform(-1, 1) * options.roll_deg)
    rotate = quaternion_to_matrix(world_to_camera)
    up = rotate @ Y_AXIS

    depth = _uniform(rng, options.distance)
    middle, half = _view(camera, fov)
    x, y = rng.uniform(-1, 1, size=2) * (depth * half) * options.margin + depth * middle
    centre = np.array([x, y, depth])
    quaternion = _object_rotation(rng, options.rotation, world_to_camera)
    lift = shape.dimensions[1] / 2 if options.rotation == "yaw" else shape.radius  # yaw: its y axis is the normal
    fixtures = []
    if options.rig is not None:  # its own generator: scenes without a rig keep their draws
        placing = np.random.default_rng(rng.integers(2**63))
        placed = options.rig.place(placing, rotate, lift, (middle, half), options.margin, options.distance)
        centre, depth = (centre, depth) if placed is None else (placed, float(placed[2]))
        fixtures = [options.rig.base_in(world_to_camera)]
    cube = Box(centre, quaternion, np.array(shape.dimensions), np.ones(3))
    table_centre = centre - up * lift
    objects = [cube]
    if options.objects != (1, 1) or options.empty_fraction > 0:  # no draws otherwise: one-object scenes stay
        objects = _more_objects(rng, options, cube, up, world_to_camera, (middle, half))

    elevation, azimuth = np.radians(rng.uniform(20, 80)), rng.uniform(0, 2 * np.pi)
    light_world = np.array(
        [np.cos(elevation) * np.cos(azimuth), np.sin(elevation), np.cos(elevation) * np.sin(azimuth)]
    )
    return Scene(
        objects=objects,
        vertical_fov_deg=fov,
        up=up,
        table_centre=table_centre,
        table_texture=_table_texture(rng),
        table_tiles=float(rng.uniform(2, 12)),
        table_size=options.table_size,
        background_texture=rng.integers(0, 256, size=(rng.integers(2, 9), rng.integers(2, 9), 3), dtype=np.uint8),
        background_index=int(rng.integers(backgrounds)) if backgrounds else -1,
        light_direction=rotate @ light_world,
        light_colour=rng.uniform(0.55, 1.1) * (1 + rng.uniform(-0.15, 0.15, size=3)),
        ambient=rng.uniform(0.15, 0.45) * (1 + rng.uniform(-0.1, 0.1, size=3)),
        noise=_uniform(rng, options.noise),
        blur=_uniform(rng, options.blur),
        noise_seed=int(rng.integers(2**32)),
        distractors=_distractors(rng, options, table_centre, world_to_camera, depth, shape.radius, objects),
        camera=camera,
        fixtures=fixtures,
    )


def _object_rotation(rng: np.random.Generator, rotation: str, world_to_camera: np.ndarray) -> np.ndarray:
    """An object's orientation (x, y, z, w; w >= 0): turned about the table's normal (yaw), or any (full)."""
    if rotation == "yaw":
        quaternion = quaternion_multiply(world_to_camera, axis_angle_quaternions(Y_AXIS, rng.uniform(-np.pi, np.pi)))
    else:
        quaternion = rng.normal(size=4)
        quaternion /= np.linalg.norm(quaternion)
    return quaternion if quaternion[3] >= 0 else -quaternion


def _more_objects(
    rng: np.random.Generator,
    options: SceneOptions,
    first: Box,
    up: np.ndarray,
    world_to_camera: np.ndarray,
    view: tuple[np.ndarray, np.ndarray],
) -> list[Box]:
    """The scene's instances of the object: none (``empty_fraction`` of the images), or ``first`` and up to
    ``objects`` in all, each inside the view and the distance range, never overlapping another (bounding
    spheres apart), standing on the table (yaw: centres on the plane through ``first``'s) or floating (full).

    An instance that finds no free place in ``PLACEMENT_TRIES`` draws is left out, so a crowded view holds fewer.
    """
    wanted = int(rng.integers(options.objects[0], options.objects[1] + 1))
    if rng.uniform() < options.empty_fraction:
        return []
    radius = ObjectBox(options.dimensions).radius
    middle, half = view
    objects = [first]
    for _ in range(wanted - 1):
        for _ in range(PLACEMENT_TRIES):
            slope = rng.uniform(-1, 1, size=2) * half * options.margin + middle
            ray = np.array([*slope, 1.0])
            depth = (
                first.translation @ up / (ray @ up) if options.rotation == "yaw" else _uniform(rng, options.distance)
            )
            centre = depth * ray
            inside = options.distance[0] <= depth <= options.distance[1]
            if inside and all(np.linalg.norm(centre - o.translation) > 2 * radius * OBJECT_GAP for o in objects):
                rotation = _object_rotation(rng, options.rotation, world_to_camera)
                objects.append(Box(centre, rotation, first.size, first.colour))
                break
    return objects


def _view(camera: Camera | None, fov: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Directions (x/z, y/z) of the image's centre and its half-extent per axis: where the object's centre may go.

    Without a camera, a centred one of vertical field of view ``fov`` and square images.
    """
    if camera is None:
        half = np.tan(np.radians(fov) / 2)
        return np.zeros(2), np.array([half, half])
    return view_slopes(camera.intrinsics, camera.width, camera.height)


def _table_texture(rng: np.random.Generator) -> np.ndarray:
    """A few texels around one base colour: smooth blotches once magnified."""
    base = rng.uniform(40, 215, size=3)
    texels = base + rng.normal(0, rng.uniform(5, 40), size=(8, 8, 3))
    return np.clip(texels, 0, 255).astype(np.uint8)


def _distractors(
    rng: np.random.Generator,
    options: SceneOptions,
    table_centre: np.ndarray,
    world_to_camera: np.ndarray,
    depth: float,
    radius: float,
    objects: list[Box] | None = None,
) -> list[Box]:
    """Boxes standing on the table around the object (bounding ``radius``), never overlapping it (nor, when
    the scene holds several instances, ``objects``: a box too near one is left out)."""
    count = int(rng.integers(options.distractors[0], options.distractors[1] + 1))
    # 0.2 m clears the default cube's and a box's half-diagonals; a larger object pushes the boxes out
    clearance = max(0.2, radius + DISTRACTOR_EDGES[1] * np.sqrt(2) / 2)
    rotate = quaternion_to_matrix(world_to_camera)
    up, along, across = rotate @ Y_AXIS, rotate @ X_AXIS, rotate @ Z_AXIS
    boxes = []
    for _ in range(count):
        size = rng.uniform(*DISTRACTOR_EDGES, size=3)
        angle = rng.uniform(0, 2 * np.pi)
        gap = clearance + rng.uniform(0, 0.8) * depth
        position = table_centre + gap * (np.cos(angle) * along + np.sin(angle) * across) + up * size[1] / 2
        turn = quaternion_multiply(world_to_camera, axis_angle_quaternions(Y_AXIS, rng.uniform(0, np.pi)))
        box = Box(position, turn, size, rng.uniform(0.05, 1.0, size=3))
        if objects is None or all(np.linalg.norm(position - o.translation) > clearance for o in objects[1:]):
            boxes.append(box)
    return boxes
