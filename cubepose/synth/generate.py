"""`cubepose generate`: rendered cube datasets with domain randomisation in a Perception layout.

Each image's scene comes from its own generator seeded by (seed, index), so the same seed and
options give the same files whatever the number of workers or the order of work. Images are
written under a temporary name and renamed, so a re-run renders only what is missing.

``--shard K --shards N`` renders only the K-th of N equal ranges of indices into
``<out>/shard-K-of-N/``: the shards of one dataset can render on N machines at once, never
repeat a scene (every image keeps its own (seed, index)), and together hold exactly the images
of the unsharded run. The readers take the folder of shards as one dataset (cubepose.data.shards).
A ``gs://`` output renders into the local cache and is then uploaded.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from cubepose.data.shards import MANIFEST, shard_name
from cubepose.io_utils import atomic_open, atomic_write_text
from cubepose.storage import default_cache_dir, is_gcs_url, upload_folder
from cubepose.synth.scene import PRESETS, ROTATION_MODES, SceneOptions, sample_scene
from cubepose.synth.writers import LAYOUTS, FrameLabel

logger = logging.getLogger(__name__)

IMAGES_PER_TASK = 32  # unit of work handed to a worker process
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
BACKGROUND_SIZE = 256  # user backgrounds are resized to this square texture
PNG_COMPRESSION = 1  # zlib level: 6 (PIL's default) costs more time than the renderer, for ~10% smaller files


@dataclass(frozen=True)
class GenerationOptions:
    """What to write and the scene ranges (a preset, optionally overridden)."""

    count: int
    seed: int = 0
    image_size: int = 128
    format: str = "legacy"  # Perception layout: "legacy" (0.x) or "solo" (1.0+)
    scene: SceneOptions = field(default_factory=SceneOptions)
    backgrounds: str | None = None  # folder of user background images
    workers: int = 1
    shard: int = 0  # this process renders shard `shard` of `shards` equal index ranges
    shards: int = 1

    def indices(self) -> range:
        """The image indices this run renders: all of them, or its shard's range."""
        return shard_range(self.count, self.shard, self.shards)


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


def background_files(folder: str | None) -> list[Path]:
    if folder is None:
        return []
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"--backgrounds {folder}: no .png or .jpg images in it")
    return files


# -- work done in each process ---------------------------------------------------------------

_renderer: tuple[tuple, object] | None = None  # (key, GLRenderer) of this process


def _get_renderer(options: GenerationOptions, backgrounds: list[Path]):
    """This process's renderer for this size and backgrounds, created on first use (GL cannot cross a fork)."""
    global _renderer
    key = (options.image_size, tuple(backgrounds))
    if _renderer is None or _renderer[0] != key:
        from cubepose.synth.gl_renderer import GLRenderer

        if _renderer is not None:
            _renderer[1].release()
        textures = [
            np.asarray(Image.open(p).convert("RGB").resize((BACKGROUND_SIZE,) * 2, Image.BILINEAR)) for p in backgrounds
        ]
        _renderer = (key, GLRenderer(options.image_size, options.image_size, textures))
    return _renderer[1]


def frame(out: Path, options: GenerationOptions, backgrounds: list[Path], index: int) -> FrameLabel:
    """Render and write frame ``index`` unless its files exist; return its labels either way."""
    layout = LAYOUTS[options.format](out, options.seed)
    scene = sample_scene(np.random.default_rng([options.seed, index, 0]), options.scene, len(backgrounds))
    cube = scene.cube
    label = FrameLabel(
        index, cube.translation, cube.quaternion, scene.vertical_fov_deg, options.image_size, options.image_size
    )
    image_path, label_path = layout.image_path(index), layout.label_path(index)
    if image_path.exists() and (label_path is None or label_path.exists()):
        return label
    image = _get_renderer(options, backgrounds).render(scene, symmetric=options.scene.symmetric)
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


def _claim(out: Path, options: GenerationOptions) -> None:
    """Record the options in ``out``; a folder generated with other options is refused, never mixed.

    ``count`` may grow between runs of an unsharded folder (extending it), but it fixes a shard's range.
    """
    ignored = ("workers",) if options.shards > 1 else ("count", "workers")
    recorded = {k: v for k, v in asdict(options).items() if k not in ignored}
    recorded = json.loads(json.dumps(recorded))  # tuples as lists, as read back
    manifest = out / MANIFEST
    if manifest.exists():
        previous = json.loads(manifest.read_text())
        if previous != recorded:
            changed = ", ".join(sorted(k for k in recorded if previous.get(k) != recorded[k]))
            raise ValueError(
                f"{out} was generated with other options ({changed} differ); use a new folder, or the same "
                "options to resume or extend it"
            )
        return
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty and was not made by cubepose generate; choose a new folder")
    atomic_write_text(manifest, json.dumps(recorded, indent=1))


def generate_dataset(out: str | os.PathLike, options: GenerationOptions) -> Path | str:
    """Render ``options.count`` images (or one shard of them) into ``out``; resume if partly done.

    ``out`` may be a folder or ``gs://bucket/prefix``. Returns the folder (a Path) or the gs:// URL
    that now holds the dataset or shard.
    """
    check_options(options)
    target = str(out).rstrip("/")
    if is_gcs_url(target):  # gs://bucket/data/ + /train from a pipeline parameter: no empty path segments
        target = "gs://" + re.sub("/{2,}", "/", target.removeprefix("gs://"))
    if options.shards > 1:
        target = f"{target}/{shard_name(options.shard, options.shards)}"
    if not is_gcs_url(target):
        _render(Path(target), options)
        return Path(target)
    staging = default_cache_dir() / "generate" / target.removeprefix("gs://")
    _render(staging, options)
    uploaded = upload_folder(staging, target)
    logger.info("uploaded %d new or changed files of %s to %s", uploaded, staging, target)
    return target


def check_options(options: GenerationOptions) -> None:
    """Refuse options that cannot make a dataset, naming the flag to change."""
    if options.count < 1:
        raise ValueError(f"--count must be at least 1, got {options.count}")
    if options.shards < 1 or not 0 <= options.shard < options.shards:
        raise ValueError(f"--shard must be in 0..{options.shards - 1} (--shards {options.shards}), got {options.shard}")
    if options.shards > options.count:
        raise ValueError(f"--shards {options.shards} is more than --count {options.count}; every shard needs images")
    if options.format not in LAYOUTS:
        raise ValueError(f"--format must be one of {', '.join(LAYOUTS)}, got {options.format!r}")
    if options.format == "legacy" and options.scene.vertical_fov_deg[0] != options.scene.vertical_fov_deg[1]:
        raise ValueError("a field of view range needs --format solo: legacy data records no camera per image")


def _render(out: Path, options: GenerationOptions) -> None:
    """Render this run's indices into the local folder ``out`` and write the layout's label files."""
    backgrounds = background_files(options.backgrounds)
    _claim(out, options)
    layout = LAYOUTS[options.format](out, options.seed)
    layout.prepare()
    for partial in out.rglob(".*.tmp"):  # left by an interrupted run
        partial.unlink()

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
        finally:
            if pool is not None:
                pool.close()
                pool.join()
    labels.sort(key=lambda label: label.index)
    layout.finish(labels)
    logger.info("wrote %d captures (%s layout) to %s", len(indices), options.format, out)
