"""`cubepose generate`: rendered cube datasets with domain randomisation in a Perception layout.

Each image's scene comes from its own generator seeded by (seed, index), so the same seed and
options give the same files whatever the number of workers or the order of work. Images are
written under a temporary name and renamed, so a re-run renders only what is missing.

``--shard K --shards N`` renders only the K-th of N equal ranges of indices into
``<out>/shard-K-of-N/``: the shards of one dataset can render on N machines at once, never
repeat a scene (every image keeps its own (seed, index)), and together hold exactly the images
of the unsharded run. The readers take the folder of shards as one dataset (cubepose.data.shards).
A ``gs://`` or ``s3://`` output renders into the local cache and is then uploaded.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import multiprocessing
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from cubepose.data.calibration import camera_info_yaml, read_calibration
from cubepose.data.images import as_rgb, open_image
from cubepose.data.shards import MANIFEST, shard_folders, shard_name
from cubepose.geometry.camera import Camera
from cubepose.geometry.object import default_dimensions
from cubepose.io.atomic import atomic_open, atomic_write_text
from cubepose.io.locks import Lock
from cubepose.io.temporary import is_temporary, remove_orphans_under
from cubepose.io.video import VideoWriter
from cubepose.storage import Operation, backend_for, default_cache_dir, normalized, upload_folder
from cubepose.synth.lens import LensWarp
from cubepose.synth.scene import (
    DISTANCE_LIMITS,
    FARTHEST_DISTANCE,
    NEAREST_DISTANCE,
    PRESET_CAMERAS,
    PRESETS,
    ROTATION_MODES,
    Scene,
    SceneOptions,
    sample_camera,
    sample_scene,
)
from cubepose.synth.sequence import VIDEO as SEQUENCE_VIDEO
from cubepose.synth.sequence import SequenceOptions, sequence_frame
from cubepose.synth.styles import letter_faces, style_image, style_scene
from cubepose.synth.textures import FACE_NAMES, FACE_STYLES, NET_ASPECT, PHOTO_FACE_SIZE, cube_atlas, net_faces
from cubepose.synth.writers import BOP_SPLIT, LAYOUTS, FrameLabel

logger = logging.getLogger(__name__)

BOP_SPLIT_NAME = re.compile(r"[A-Za-z0-9_]+")
IMAGES_PER_TASK = 32  # unit of work handed to a worker process
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
BACKGROUND_SIZE = 256  # user backgrounds are resized to this square texture
PNG_COMPRESSION = 1  # zlib level: 6 (PIL's default) costs more time than the renderer, for ~10% smaller files
# The default preset's cube edge spans 16-28% of the image side (10-18 px of 64): 2.5-4.5 px at 16 px, and below
# that its marked faces can no longer be told apart.
MIN_IMAGE_SIZE = 16
# The sensor shader keys its noise by x + 4096 y, so wider images would repeat noise; and a 4096 px frame already
# takes about 0.7 GB of OpenGL buffers per worker (4x multisampled colour and depth, resolve and output buffers).
MAX_IMAGE_SIZE = 4096
DEFAULT_IMAGE_SIZE = 128
CAMERA_INFO = "camera_info.yaml"  # the images' camera (with its distortion) for cubepose predict --camera and ROS
CAMERA_FIX = "give W H FX FY CX CY in pixels, e.g. --camera 640 480 600 600 320 240"


@dataclass(frozen=True)
class GenerationOptions:
    """What to write and the scene ranges (a preset, optionally overridden).

    Images are ``image_size`` squared with a centred camera of the scene's field of view, or, when the scene
    gives a camera in pixels (``scene.camera``), that camera's size (``image_size`` then stays at its default).
    An ``image_size`` range (LO, HI), a scene ``aspect`` range or ``principal_jitter`` randomise the camera:
    each image draws its height, width / height, field of view and principal point (``scene.sample_camera``).
    """

    count: int
    seed: int = 0
    image_size: int | tuple[int, int] = DEFAULT_IMAGE_SIZE  # the side of square images, or a range of heights
    format: str = "legacy"  # layout: "legacy" (Perception 0.x), "solo" (Perception 1.0+) or "bop"
    bop_split: str = BOP_SPLIT  # BOP: the split folder beside models/
    scene: SceneOptions = field(default_factory=SceneOptions)
    backgrounds: str | None = None  # folder of user background images
    workers: int = 1
    shard: int = 0  # this process renders shard `shard` of `shards` equal index ranges
    shards: int = 1
    sequence: SequenceOptions | None = None  # frames of one moving scene instead of independent images

    def indices(self) -> range:
        """The image indices this run renders: all of them, or its shard's range."""
        return shard_range(self.count, self.shard, self.shards)

    @property
    def heights(self) -> tuple[int, int]:
        """The range of image heights in pixels (ends included)."""
        size = self.image_size
        return (size, size) if isinstance(size, int) else (size[0], size[1])

    @property
    def randomises_camera(self) -> bool:
        """Whether each image draws its own size and principal point (the field of view alone varies without)."""
        scene = self.scene
        return self.heights[0] != self.heights[1] or tuple(scene.aspect) != (1.0, 1.0) or scene.principal_jitter > 0

    @property
    def resolution(self) -> tuple[int, int]:
        """(width, height) of the images in pixels: the largest when the camera is randomised."""
        camera = self.scene.camera
        if camera is not None:
            return camera.size
        height = self.heights[1]
        return (round(height * self.scene.aspect[1]), height)

    def image_camera(self, index: int) -> Camera | None:
        """Image ``index``'s randomised camera, from its own generator (the scene's draws stay as without it)."""
        if not self.randomises_camera:
            return None
        return sample_camera(np.random.default_rng([self.seed, index, 1]), self.scene, self.heights)


def shard_range(count: int, shard: int, shards: int) -> range:
    """The ``shard``-th of ``shards`` contiguous, near-equal ranges that partition ``range(count)``."""
    return range(shard * count // shards, (shard + 1) * count // shards)


def scene_options(preset: str = "default", **overrides) -> SceneOptions:
    """A preset's ranges with the given fields replaced (None values are ignored)."""
    if preset not in PRESETS:
        raise ValueError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if overrides.get("rotation") not in (None, *ROTATION_MODES):
        raise ValueError(f"--rotation must be one of {', '.join(ROTATION_MODES)}, got {overrides['rotation']!r}")
    return replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})


def camera_option(values: Sequence[float]) -> Camera:
    """``--camera W H FX FY CX CY`` as a Camera; impossible values are a ValueError naming the flag and the fix."""
    if len(values) != 6:
        shown = " ".join(f"{v:g}" for v in values)
        raise ValueError(f"--camera takes six numbers, got {len(values)} ({shown}); {CAMERA_FIX}")
    try:
        return Camera.from_values(values)
    except ValueError as err:
        raise ValueError(f"--camera: {err}; {CAMERA_FIX}") from None


def faces_option(values: Sequence[str] | None) -> str | tuple[str, ...] | None:
    """``--faces``: a style (die, plain) or the image files, as SceneOptions.faces takes them; None when not given."""
    if not values:
        return None
    return values[0] if len(values) == 1 and values[0] in FACE_STYLES else tuple(values)


def range_option(flag: str, values: Sequence[float] | None) -> tuple | None:
    """A flag taking one value or a range LO HI as a (LO, HI) pair (one value: both ends); None when not given."""
    if not values:
        return None
    if len(values) > 2:
        raise ValueError(f"{flag} takes one value or a range LO HI, got {' '.join(map(str, values))}")
    return (values[0], values[-1])


def chosen_camera(
    preset: str,
    camera: Camera | None,
    image_size: int | tuple[int, int] | None,
    fov: tuple[float, float] | None,
    randomised: bool = False,
) -> tuple[Camera | None, int | tuple[int, int]]:
    """The camera in pixels (or None) and the image size (a square's side or a range of heights) a command renders.

    ``--camera`` (or ``--camera-from``) gives the camera, and excludes ``--image-size`` and ``--fov``, which ask
    for a centred camera of square images (or, with ``randomised``: ``--aspect`` or ``--principal-jitter``, one
    drawn per image); with none of them the preset's camera is used.
    """
    if camera is not None:
        if image_size is not None or fov is not None:
            given = " and ".join(f for f, v in (("--image-size", image_size), ("--fov", fov)) if v is not None)
            raise ValueError(
                f"--camera (or --camera-from) gives the image size and focal lengths; leave out {given}, or the camera"
            )
        return camera, DEFAULT_IMAGE_SIZE
    if image_size is not None or fov is not None or randomised:
        return None, DEFAULT_IMAGE_SIZE if image_size is None else image_size
    return PRESET_CAMERAS.get(preset), DEFAULT_IMAGE_SIZE  # an unknown preset is refused by scene_options


def distance_range(preset: str, nearest: float | None, farthest: float | None) -> tuple[float, float] | None:
    """The cube's distance range from ``--min-distance``/``--max-distance``; None when neither is given.

    A flag not given takes the preset's bound. Each given value is checked on its own, so the message names
    its flag, and one that crosses the preset's other bound says which flag to add.
    """
    if nearest is None and farthest is None:
        return None
    for flag, value in (("--min-distance", nearest), ("--max-distance", farthest)):
        if value is not None and not (math.isfinite(value) and NEAREST_DISTANCE <= value <= FARTHEST_DISTANCE):
            raise ValueError(
                f"{flag} must be between {NEAREST_DISTANCE} and {FARTHEST_DISTANCE:g} metres, "
                f"got {value}: {DISTANCE_LIMITS}"
            )
    default = scene_options(preset).distance
    low = default[0] if nearest is None else nearest
    high = default[1] if farthest is None else farthest
    if low <= high:
        return (low, high)
    if nearest is None:
        raise ValueError(
            f"--max-distance {high:g} is nearer than preset {preset}'s nearest distance {low:g}; "
            f"give --min-distance too, at most {high:g}"
        )
    if farthest is None:
        raise ValueError(
            f"--min-distance {low:g} is beyond preset {preset}'s farthest distance {high:g}; "
            f"give --max-distance too, at least {low:g}"
        )
    raise ValueError(f"--min-distance {low:g} is more than --max-distance {high:g}; swap them")


def with_distortion(camera: Camera | None, coefficients: Sequence[float]) -> Camera:
    """``--distortion``: the given camera with OpenCV's distortion ``coefficients``; refusals name the flag."""
    if camera is None:
        raise ValueError("--distortion needs the camera it belongs to: give --camera or --camera-from too")
    try:
        return replace(camera, distortion=tuple(coefficients))
    except ValueError as err:
        raise ValueError(f"--distortion: {err}") from None


def camera_from_export(root: str, cache_dir: str | None = None) -> Camera:
    """The one camera of an existing export (``--camera-from``), as its labels record it, or of a camera file
    (cubepose.data.calibration: ROS camera_info, OpenCV), with its lens distortion.

    SOLO captures record it (``matrix`` and ``dimension``, or cubepose's exact ``cubepose_intrinsics``), and so do
    legacy exports cubepose made with a camera in pixels; a legacy export cubepose made with ``--image-size`` and
    ``--fov`` is read from its generate options. Unity's legacy ``camera_intrinsic`` is not trusted: such an export
    is refused, saying to pass ``--camera``.
    """
    from cubepose.data.formats import read_recorded
    from cubepose.data.sources import local_root
    from cubepose.errors import CubeposeError, DatasetError

    if Path(root).is_file():
        try:
            camera = read_calibration(root)
        except CubeposeError as err:
            raise ValueError(f"--camera-from {err}") from None
        if camera.size is None:
            raise ValueError(f"--camera-from {root} states no image size; add width and height to it")
        return Camera(**asdict(camera))  # one to render with: its principal point checked to lie in the image
    try:
        index = read_recorded(local_root(root, cache_dir))
    except DatasetError as err:
        raise ValueError(f"--camera-from {root}: {err}") from None
    cameras = index.cameras.copy()
    unknown = np.isnan(cameras).any(axis=1)
    if unknown.any():
        generated = _generated_camera(index.root)
        if generated is None:
            raise ValueError(
                f"--camera-from {root}: a legacy Perception export records its camera only as camera_intrinsic, which "
                f"cubepose does not trust; give the camera with --camera W H FX FY CX CY (pixels)"
            )
        cameras[unknown, :4] = generated.intrinsics
    distinct = np.unique(np.column_stack([index.image_sizes, cameras]), axis=0)
    if len(distinct) > 1:
        listed = "; ".join(" ".join(f"{v:g}" for v in row[:6]) for row in distinct[:3])
        raise ValueError(
            f"--camera-from {root}: the export holds {len(distinct)} cameras (W H FX FY CX CY: {listed}); "
            "give one with --camera"
        )
    lens = tuple(distinct[0, 6:]) if distinct[0, 6:].any() else None  # the lens its images went through
    try:
        return replace(Camera.from_values(distinct[0, :6]), distortion=lens)
    except ValueError as err:
        raise ValueError(f"--camera-from {root}: its camera is unusable ({err}); give one with --camera") from None


def _generated_camera(root: Path) -> Camera | None:
    """The camera a cubepose generate manifest in ``root`` (or its first shard) records, or None without one."""
    folders = shard_folders(root) or [root]
    recorded = _read_manifest(folders[0] / MANIFEST)
    if recorded is None or not isinstance(recorded.get("scene"), dict):
        return None
    scene = recorded["scene"]
    if isinstance(scene.get("camera"), dict):
        try:
            camera = Camera(**scene["camera"])
        except (TypeError, ValueError):  # a damaged manifest: no camera to trust
            return None
        return camera if camera.size is not None else None  # likewise without its size
    fov, size = scene.get("vertical_fov_deg"), recorded.get("image_size")
    if not (isinstance(fov, list) and len(fov) == 2 and fov[0] == fov[1] and isinstance(size, int)):
        return None
    return Camera.from_fov(fov[0], size, size)


def background_files(folder: str | None) -> list[Path]:
    if folder is None:
        return []
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"--backgrounds {folder}: no .png or .jpg images in it")
    return files


def face_image(path: str) -> np.ndarray:
    """A user face image as a square uint8 RGB texture; an unreadable file is a ValueError naming it."""
    try:
        with open_image(path) as image:
            return np.asarray(as_rgb(image).resize((PHOTO_FACE_SIZE,) * 2, Image.BILINEAR))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise ValueError(
            f"--faces: cannot read {path} as an image ({err}); give six PNG or JPEG files, one per face in the "
            f"order {' '.join(FACE_NAMES)}"
        ) from None


def net_image(path: str) -> list[np.ndarray]:
    """The six face textures of an unfolded net image (``--faces NET``); a file that is no 4:3 cross is refused."""
    if not Path(path).exists():  # most likely a mistyped style
        raise ValueError(
            f"--faces takes {' or '.join(FACE_STYLES)}, six image files in the order {' '.join(FACE_NAMES)}, or one "
            f"image of the unfolded net (a 4:3 cross); {path} is neither a style nor a file"
        )
    try:
        with open_image(path) as image:
            net = np.asarray(as_rgb(image))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise ValueError(f"--faces: cannot read {path} as an image ({err}); give a PNG or JPEG of the net") from None
    height, width = net.shape[:2]
    if abs(width / height - NET_ASPECT) > 0.02 or width < 8:
        raise ValueError(
            f"--faces {path}: an unfolded net is a 4:3 cross of square faces (4 wide, 3 high), got {width}x{height} "
            f"pixels; give six files in the order {' '.join(FACE_NAMES)} instead, or crop the net to 4:3"
        )
    return [np.asarray(Image.fromarray(face).resize((PHOTO_FACE_SIZE,) * 2, Image.BILINEAR)) for face in net_faces(net)]


def face_images(faces: tuple[str, ...]) -> list[np.ndarray]:
    """The six face textures of ``--faces``: six files, or one unfolded net."""
    return net_image(faces[0]) if len(faces) == 1 else [face_image(path) for path in faces]


def face_atlas(faces: str | tuple[str, ...], style: str = "randomised") -> np.ndarray:
    """The object's texture atlas for ``--faces``: die, plain, six image files or a net; the letters style's own."""
    if style == "letters":
        return cube_atlas(letter_faces())
    return cube_atlas(faces if isinstance(faces, str) else face_images(faces))


def background_texture(path: Path) -> np.ndarray:
    """A user background as a square uint8 RGB texture; an unreadable file is a ValueError naming it."""
    try:
        with open_image(path) as image:
            return np.asarray(as_rgb(image).resize((BACKGROUND_SIZE,) * 2, Image.BILINEAR))
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise ValueError(
            f"--backgrounds: cannot read {path} ({err}); remove it or replace it with a PNG or JPEG"
        ) from None


# -- work done in each process ---------------------------------------------------------------

_renderer: tuple[tuple, object] | None = None  # (key, GLRenderer) of this process


def _get_renderer(options: GenerationOptions, backgrounds: list[Path]):
    """This process's renderer for this size (a distorted camera's canvas), backgrounds and faces, created on
    first use (GL cannot cross a fork)."""
    global _renderer
    lens = _lens_warp(options.scene.camera)
    resolution = options.resolution if lens is None else lens.canvas.size
    key = (resolution, tuple(backgrounds), options.scene.faces, options.scene.style)
    if _renderer is None or _renderer[0] != key:
        from cubepose.synth.gl_renderer import GLRenderer

        textures = [background_texture(p) for p in backgrounds]  # first: a bad one must not leave a dead renderer
        atlas = face_atlas(options.scene.faces, options.scene.style)
        if _renderer is not None:
            _renderer[1].release()
            _renderer = None
        _renderer = (key, GLRenderer(*resolution, textures, atlas))
    return _renderer[1]


@functools.lru_cache(maxsize=1)
def _first_scene(options: GenerationOptions, backgrounds: int) -> Scene:
    """A sequence's scene at frame 0, drawn once per process (frame 0's draw of independent images)."""
    return sample_scene(np.random.default_rng([options.seed, 0, 0]), options.scene, backgrounds)


@functools.lru_cache(maxsize=1)
def _lens_warp(camera: Camera | None) -> LensWarp | None:
    """The warp of a camera with lens distortion (its maps computed once per process), None for a pinhole one."""
    return None if camera is None or camera.distortion is None else LensWarp(camera)


def frame(out: Path, options: GenerationOptions, backgrounds: list[Path], index: int) -> FrameLabel:
    """Render and write frame ``index`` unless its files exist; return its labels either way."""
    layout = LAYOUTS[options.format].for_options(out, options)
    if options.sequence is None:
        rng = np.random.default_rng([options.seed, index, 0])
        scene = sample_scene(rng, options.scene, len(backgrounds), options.image_camera(index))
    else:
        scene = sequence_frame(_first_scene(options, len(backgrounds)), index, options.count, options.sequence)
    look = [options.seed, index if options.sequence is None else 0, 2]  # a sequence keeps one room
    scene = style_scene(scene, options.scene.style, np.random.default_rng(look))
    label = FrameLabel(
        index,
        np.array([instance.translation for instance in scene.objects]).reshape(-1, 3),
        np.array([instance.quaternion for instance in scene.objects]).reshape(-1, 4),
        scene.vertical_fov_deg,
        *(options.resolution if scene.camera is None else scene.camera.size),
        tuple(options.scene.dimensions),
        None if scene.camera is None else tuple(scene.camera.intrinsics),
        None if scene.camera is None else scene.camera.distortion,
    )
    image_path, label_path = layout.image_path(index), layout.label_path(index)
    if image_path.exists() and (label_path is None or label_path.exists()):
        return label
    renderer, lens = _get_renderer(options, backgrounds), _lens_warp(scene.camera)
    image = renderer.render(scene) if lens is None else lens(renderer.render(replace(scene, camera=lens.canvas)))
    image = style_image(image, options.scene.style, np.random.default_rng([options.seed, index, 3]))
    image_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(image_path, "wb", durable=False) as handle:
        Image.fromarray(image).save(handle, format="PNG", compress_level=PNG_COMPRESSION)
    layout.write_label(label)
    return label


def _single_threaded_llvmpipe() -> None:
    """Pool initializer: one llvmpipe thread per worker process, since the workers already fill the cores.

    Measured at 224 px on 2 cores with 2 workers: 112 img/s against 104 with llvmpipe's default threads.
    """
    os.environ.setdefault("LP_NUM_THREADS", "1")


def _frames(task: tuple[Path, GenerationOptions, list[Path], range]) -> list[FrameLabel]:
    out, options, backgrounds, indices = task
    return [frame(out, options, backgrounds, index) for index in indices]


# -- the command ------------------------------------------------------------------------------


def _recorded_options(options: GenerationOptions) -> dict:
    """The options a folder's manifest records: all but ``workers`` (and ``count``, which may grow, unless sharded).

    ``count`` fixes a shard's range, so it is recorded for shards only.
    """
    ignored = ("workers",) if options.shards > 1 else ("count", "workers")
    ignored += () if options.format == "bop" else ("bop_split",)  # as folders made before BOP recorded
    recorded = {k: v for k, v in asdict(options).items() if k not in ignored}
    scene = recorded["scene"]
    if options.scene.dimensions == default_dimensions():  # left out, as in folders made before the option: they resume
        del scene["dimensions"]
    defaults = asdict(SceneOptions())
    for name in ("aspect", "principal_jitter", "objects", "empty_fraction", "style", "rig"):  # likewise
        if _plain(scene[name]) == _plain(defaults[name]):
            del scene[name]
    if options.sequence is None:  # likewise
        del recorded["sequence"]
    if options.scene.camera is None:  # likewise
        del scene["camera"]
    else:
        if options.scene.camera.distortion is None:  # likewise
            del scene["camera"]["distortion"]
        # the camera gives the size and focal lengths: the square image's options say nothing
        del recorded["image_size"], scene["vertical_fov_deg"]
    recorded["scene"] = _recorded_faces(scene, options.scene.faces)
    return json.loads(json.dumps(recorded))  # tuples as lists, as read back


def _plain(value: object) -> object:
    """A value as its manifest records it (tuples as lists), to compare with a default."""
    return json.loads(json.dumps(value))


def _recorded_faces(scene: dict, faces: str | tuple[str, ...]) -> dict:
    """``scene`` with ``faces`` recorded as folders made before ``--faces`` record it (``symmetric``: plain or not,
    in its place), plus, for image files, each file's SHA-256, so that other pictures never join the folder."""
    recorded = {}
    for key, value in scene.items():  # in order: the manifest's bytes stay as before
        recorded.update({"symmetric": faces == "plain"} if key == "faces" else {key: value})
    if not isinstance(faces, str):
        recorded["faces"] = [hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in faces]
    return recorded


def _holds_output(out: Path) -> bool:
    """Whether ``out`` holds any file but the manifest and partial writes: a finished frame (or someone's file)."""
    for folder, dirs, files in os.walk(out):
        if any(Path(folder, d).is_symlink() for d in dirs):
            return True
        if any(not is_temporary(f) and not (Path(folder) == out and f == MANIFEST) for f in files):
            return True
    return False


def _discard_unfinished(out: Path) -> None:
    """Empty ``out`` of a run that finished no frame: partial files, empty folders, then the manifest.

    Only called when ``_holds_output(out)`` is False and this run holds the folder alone. The manifest goes
    last, so a process killed half-way leaves a folder that is still recognised as re-claimable.
    """
    for folder, _, files in os.walk(out, topdown=False):
        for name in filter(is_temporary, files):
            Path(folder, name).unlink(missing_ok=True)
        if Path(folder) != out:
            try:
                Path(folder).rmdir()
            except OSError:  # not empty after all: keep it
                pass
    (out / MANIFEST).unlink(missing_ok=True)


def _read_manifest(manifest: Path) -> dict | None:
    """The options a manifest records, or None when it cannot be read as a JSON object."""
    try:
        recorded = json.loads(manifest.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return recorded if isinstance(recorded, dict) else None


def _claim(out: Path, options: GenerationOptions, lock: Lock) -> None:
    """Record the options in ``out``; a folder holding frames of other options is refused, never mixed.

    The manifest is written before the first frame, but binds only once a frame exists: a folder with a
    manifest and no finished frame (the run was refused, failed or killed before its first image) is
    re-claimed by a command with other options, so a corrected command is never blocked by the failure
    it corrects. Resuming with the same options always works; any finished frame makes the manifest
    binding. ``count`` may grow between runs of an unsharded folder (extending it), but it fixes a shard's range.
    The manifest is only written with the folder held alone, and the state is read again once it is held.
    """
    recorded = _recorded_options(options)
    if _claim_state(out, recorded) == "resume":
        return
    _take_alone(out, lock)
    state = _claim_state(out, recorded)  # again: another run may have claimed it meanwhile
    if state == "reclaim":
        logger.info("%s holds no finished frame of its last run; starting it afresh with these options", out)
        _discard_unfinished(out)
    if state != "resume":
        atomic_write_text(out / MANIFEST, json.dumps(recorded, indent=1))
    lock.shared()


def _claim_state(out: Path, recorded: dict) -> str:
    """What claiming ``out`` for ``recorded`` takes; raises where the folder must not be used.

    "resume": its manifest records the same options; "fresh": it is empty; "reclaim": its manifest records
    other options but no frame was finished (see ``_claim``).
    """
    manifest = out / MANIFEST
    if not manifest.exists():
        if any(out.iterdir()):
            raise ValueError(f"{out} is not empty and was not made by cubepose generate; choose a new folder")
        return "fresh"
    previous = _read_manifest(manifest)
    if previous == recorded:
        return "resume"
    if not _holds_output(out):
        return "reclaim"
    if previous is None:
        raise ValueError(f"{manifest} is damaged and {out} holds frames; use a new folder")
    changed = ", ".join(sorted(k for k in recorded if previous.get(k) != recorded[k]))
    raise ValueError(
        f"{out} was generated with other options ({changed} differ); use a new folder, or the same "
        "options to resume or extend it"
    )


def _take_alone(out: Path, lock: Lock) -> None:
    """Hold ``out`` exclusively to write its manifest, or refuse: another run is starting or writing there."""
    if not lock.exclusive():
        raise ValueError(
            f"another cubepose generate is writing into {out} with other options or starting there; wait for it "
            "to finish (or stop it), or use a new folder"
        )


def generate_dataset(out: str | os.PathLike, options: GenerationOptions) -> Path | str:
    """Render ``options.count`` images (or one shard of them) into ``out``; resume if partly done.

    ``out`` may be a folder or ``gs://`` or ``s3://bucket/prefix``. Returns the folder (a Path) or the URL
    that now holds the dataset or shard.
    """
    check_options(options)
    target = str(out).rstrip("/")
    backend = backend_for(target)
    backend.require(Operation.UPLOAD_FOLDER, target)  # http(s):// is read-only
    target = normalized(target)  # gs://bucket/data/ + /train from a pipeline parameter: no empty path segments
    if options.shards > 1:
        target = f"{target}/{shard_name(options.shard, options.shards)}"
    if not backend.remote:
        _render(Path(target), options)
        return Path(target)
    staging = default_cache_dir() / "generate" / backend.name / target.split("://", 1)[1]
    _render(staging, options)
    uploaded = upload_folder(staging, target)
    logger.info("uploaded %d new or changed files of %s to %s", uploaded, staging, target)
    return target


def check_options(options: GenerationOptions) -> None:
    """Refuse options that cannot make a dataset, naming the flag to change and what it allows.

    Runs before anything is written (no folder, no manifest), so a refused command leaves nothing behind.
    """
    if options.count < 1:
        raise ValueError(f"--count must be at least 1, got {options.count}")
    if options.seed < 0:
        raise ValueError(f"--seed must be 0 or more (numpy seeds are non-negative), got {options.seed}")
    _check_resolution(options)
    if options.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {options.workers}; leave it out to use all cores")
    if options.shards < 1:
        raise ValueError(f"--shard must be in 0..N-1 for --shards N of at least 1, got --shards {options.shards}")
    if not 0 <= options.shard < options.shards:
        raise ValueError(f"--shard must be in 0..{options.shards - 1} (--shards {options.shards}), got {options.shard}")
    if options.shards > options.count:
        raise ValueError(f"--shards {options.shards} is more than --count {options.count}; every shard needs images")
    if options.format not in LAYOUTS:
        raise ValueError(f"--format must be one of {', '.join(LAYOUTS)}, got {options.format!r}")
    if options.format == "bop" and not BOP_SPLIT_NAME.fullmatch(options.bop_split):
        raise ValueError(f"--bop-split must be a folder name of letters, digits and _, got {options.bop_split!r}")
    if options.format == "legacy" and options.scene.vertical_fov_deg[0] != options.scene.vertical_fov_deg[1]:
        raise ValueError("a field of view range needs --format solo: legacy data records no camera per image")
    if options.format == "legacy" and options.randomises_camera:
        raise ValueError(
            "an --image-size range, --aspect or --principal-jitter needs --format solo: legacy data records no "
            "camera per image"
        )
    if options.format == "bop" and options.scene.camera is not None and options.scene.camera.distortion is not None:
        raise ValueError("BOP's scene_camera.json records no lens distortion: use --format solo or legacy with it")
    _check_backgrounds(options.backgrounds)
    _check_face_files(options.scene.faces)
    if options.sequence is not None:
        _check_sequence(options)


def _check_sequence(options: GenerationOptions) -> None:
    """A sequence is one scene seen by one camera, rendered whole in one folder."""
    if options.randomises_camera or options.scene.vertical_fov_deg[0] != options.scene.vertical_fov_deg[1]:
        raise ValueError("--sequence films one scene with one camera: leave out the camera ranges")
    if options.shards > 1:
        raise ValueError("--sequence renders one folder: leave out --shards (use --workers for speed)")
    if options.sequence.motion == "crossing" and (options.scene.objects[0] < 2 or options.scene.empty_fraction > 0):
        raise ValueError("--sequence crossing moves two objects: give --objects 2 2 (and no --empty-fraction)")


def _check_resolution(options: GenerationOptions) -> None:
    """Refuse images too small to tell the faces apart or too large for the sensor noise, on either axis."""
    why = (
        f"below {MIN_IMAGE_SIZE} the cube is a few pixels and its faces cannot be told apart, above {MAX_IMAGE_SIZE} "
        "the sensor noise repeats"
    )
    camera = options.scene.camera
    if camera is None:
        _check_image_size(options.image_size, why)
        (low, high), aspect = options.heights, options.scene.aspect
        widths = (round(low * aspect[0]), round(high * aspect[1]))
        if not MIN_IMAGE_SIZE <= widths[0] <= widths[1] <= MAX_IMAGE_SIZE:
            raise ValueError(
                f"--aspect {' '.join(f'{a:g}' for a in aspect)} with heights {low}-{high} gives widths "
                f"{widths[0]}-{widths[1]} pixels; widths must be {MIN_IMAGE_SIZE}-{MAX_IMAGE_SIZE}: {why}"
            )
        return
    if options.image_size != DEFAULT_IMAGE_SIZE:
        raise ValueError("--camera gives the image size; leave out --image-size (or image_size), or leave out --camera")
    if not all(MIN_IMAGE_SIZE <= side <= MAX_IMAGE_SIZE for side in camera.size):
        raise ValueError(
            f"--camera: the width and height must be {MIN_IMAGE_SIZE}-{MAX_IMAGE_SIZE} pixels, got "
            f"{camera.width}x{camera.height}: {why}"
        )


def _check_image_size(size: object, why: str) -> None:
    """Refuse an ``--image-size`` that is not a whole number of pixels, or a range LO <= HI of them, in the limits."""
    sizes = size if isinstance(size, tuple | list) else (size,)
    whole = all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in sizes) and len(sizes) in (1, 2)
    if not whole or sizes[0] > sizes[-1]:
        raise ValueError(
            f"--image-size takes a side in pixels, or a range of heights LO HI with LO <= HI; got {size!r}"
        )
    if not MIN_IMAGE_SIZE <= sizes[0] <= sizes[-1] <= MAX_IMAGE_SIZE:
        shown = " ".join(map(str, sizes))
        raise ValueError(f"--image-size must be {MIN_IMAGE_SIZE}-{MAX_IMAGE_SIZE} pixels, got {shown}: {why}")


def _check_face_files(faces: str | tuple[str, ...]) -> None:
    """Open each ``--faces`` image once, so an unreadable one is named before anything is written."""
    if not isinstance(faces, str):
        face_images(faces)


def _check_backgrounds(folder: str | None) -> None:
    """Refuse a ``--backgrounds`` path that is not a readable folder, before any output exists."""
    if folder is None:
        return
    if not Path(folder).is_dir():
        what = "is a file" if Path(folder).exists() else "does not exist"
        raise ValueError(f"--backgrounds {folder} {what}; give a folder of .png or .jpg images")
    try:
        os.listdir(folder)
    except OSError as err:
        raise ValueError(f"--backgrounds {folder} cannot be read ({err.strerror}); give a folder you may read") from err


def _new_folders(out: Path) -> list[Path]:
    """``out`` and those of its parents that do not exist yet, innermost first: what this run creates."""
    return [folder for folder in (out, *out.parents) if not folder.exists()]


def _remove_partial_files(out: Path, lock: Lock) -> None:
    """Delete the temporary files interrupted runs left; while another run writes here, only those whose writer is
    gone (an older cubepose's name no writer: they wait until this run holds the folder alone)."""
    alone = lock.exclusive()
    remove_orphans_under(out, alone=alone)
    if alone:
        lock.shared()


def _tidy_failed_run(out: Path, lock: Lock, created: list[Path], claimed: bool) -> None:
    """After a failure before the first finished frame, remove the manifest and the folders this run created.

    The folder then looks as it did before the command (a re-claim would accept it anyway, see ``_claim``).
    Nothing is removed once a frame exists (a re-run resumes it), from a folder this run did not claim, or
    while another run writes into ``out``.
    """
    if (claimed and _holds_output(out)) or not lock.exclusive():
        return
    if claimed:
        _discard_unfinished(out)
        logger.info("the run failed before its first frame; removed its manifest from %s", out)
    for folder in created:  # innermost first; stops at the first that holds something
        try:
            folder.rmdir()
        except OSError:
            break


def _render(out: Path, options: GenerationOptions) -> None:
    """Render this run's indices into the local folder ``out`` and write the layout's label files.

    A run that fails before its first frame leaves nothing behind (``_tidy_failed_run``), one killed
    leaves at most a manifest that a corrected command re-claims (``_claim``).

    The run holds an flock on ``out``: shared while it writes there, exclusive (never waited for) to delete anything.
    Runs with the same options may share a folder (one resumes what the other renders), but re-claiming it for other
    options, tidying after a failure or removing temporary files needs the folder alone: were another run still
    rendering its first frame, its frames would be mixed into a re-claimed folder, or its temporaries deleted under
    it. Where the file system has no flock (some network mounts), the folder is treated as this run's alone.
    """
    backgrounds = background_files(options.backgrounds)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; give a folder (new or made by cubepose generate) as OUT")
    created = _new_folders(out)
    out.mkdir(parents=True, exist_ok=True)
    with Lock.open(out) as lock:
        lock.shared()
        claimed = False
        try:
            _claim(out, options, lock)
            claimed = True
            _render_claimed(out, options, backgrounds, lock)
        except BaseException:
            _tidy_failed_run(out, lock, created, claimed)
            raise


def _write_sequence_video(out: Path, layout, options: GenerationOptions) -> None:
    """The sequence's frames, in order, as one lossless video beside them (``cubepose predict --video``)."""
    with VideoWriter(out / SEQUENCE_VIDEO, options.sequence.fps, options.resolution) as video:
        for index in tqdm(range(options.count), desc=f"writing {out / SEQUENCE_VIDEO}", unit="frame"):
            with open_image(layout.image_path(index)) as image:
                video.write(np.asarray(as_rgb(image)))


def _render_claimed(out: Path, options: GenerationOptions, backgrounds: list[Path], lock: Lock) -> None:
    """Render the missing frames of a claimed folder, in worker processes when there are several tasks."""
    layout = LAYOUTS[options.format].for_options(out, options)
    layout.prepare()
    _remove_partial_files(out, lock)  # left by an interrupted run

    indices = options.indices()
    tasks = [
        (out, options, backgrounds, indices[s : s + IMAGES_PER_TASK]) for s in range(0, len(indices), IMAGES_PER_TASK)
    ]
    workers = max(1, min(options.workers, len(tasks)))
    labels: list[FrameLabel] = []
    with tqdm(total=len(indices), desc=f"rendering {out}", unit="img") as bar:
        if workers == 1:
            results = map(_frames, tasks)
            pool = None
        else:
            pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_single_threaded_llvmpipe)
            results = pool.imap_unordered(_frames, tasks)
        try:
            for chunk in results:
                labels += chunk
                bar.update(len(chunk))
        except BaseException:
            if pool is not None:
                pool.terminate()  # stop the other workers now rather than after their tasks
            raise
        finally:
            if pool is not None:
                pool.close()
                pool.join()
    labels.sort(key=lambda label: label.index)
    layout.finish(labels)
    if options.scene.camera is not None:
        atomic_write_text(out / CAMERA_INFO, camera_info_yaml(options.scene.camera))
    if options.sequence is not None:
        _write_sequence_video(out, layout, options)
    logger.info("wrote %d captures (%s layout) to %s", len(indices), options.format, out)
