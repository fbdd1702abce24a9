"""`cubepose serve`: poses over HTTP for a robot stack, from one model loaded once.

FastAPI on uvicorn (the maintained ASGI pair: request validation, a lifespan for start-up and graceful
shutdown, and an event loop that holds many waiting clients cheaply). Concurrent requests are batched:
the first request waits up to ``max_wait_ms`` for others, up to ``max_batch`` images, which then go
through ``PosePredictor.predict_items`` together (grouped by camera) in a worker thread, so the event
loop keeps accepting requests while the network runs. Endpoints:

- ``POST /predict``: the body is one encoded image (PNG, JPEG or PPM); ``fx``, ``fy``, ``cx``, ``cy`` query
  parameters give its camera in its own pixels. Answers ``{"poses": [...]}`` as ``cubepose predict``'s
  JSON lines do, 4xx with ``{"error": ...}`` naming the problem and the fix for bad input, 500 without a
  traceback for anything else; ``outline=true`` adds the ``camera`` the poses hold for (the image's pixels)
  and each pose's ``outline``, its box and axes as polylines in the image (cubepose.serving.outlines);
- ``GET /``: the browser page (``cubepose/serving/page``, static files, no build step), a client of
  ``/model`` and ``/predict`` like any other;
- ``GET /health`` (the process answers), ``GET /ready`` (the model is loaded and the batcher runs),
  ``GET /model`` (checkpoint location, its SHA-256, step and network settings).

Every request is logged as one JSON line (``cubepose.serving.http.access``).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from starlette.requests import ClientDisconnect

from cubepose.data.calibration import read_calibration
from cubepose.data.images import as_rgb
from cubepose.errors import CubeposeError
from cubepose.geometry.camera import DISTORTION_KEY, KEYS, Camera, CameraError
from cubepose.geometry.object import Box
from cubepose.inference.predictor import PosePredictor, as_json_record
from cubepose.serving.outlines import pose_outlines

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("cubepose.serving.http.access")

# About half the concurrent clients per batch keeps the model busy while the other half's answers and next
# requests travel: at 8 clients, batches of 4 reach 0.9 of in-process batches of 8, batches of 8 only 0.75
MAX_BATCH = 4
MAX_WAIT_MS = 5.0
MAX_BODY_MB = 64  # a 4096 x 4096 RGB PPM is 48 MiB; camera frames are far smaller
MAX_PIXELS = 4096 * 4096  # decoded images above this are refused before decoding (a decompression bomb)
CLIENT_CLOSED_REQUEST = 499  # logged for a client that left mid-body (nginx's code; the client never sees it)
PAGE = Path(__file__).with_name("page")  # the browser page's static files
# The page runs only its own files and talks only to this service; images are shown from blob: URLs, the
# camera's picture from a media stream.
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


@dataclass
class _Request:
    """One image waiting for its batch, and the future its answer is put into."""

    image: np.ndarray
    camera: Camera | None
    outline: bool = False  # add the camera used and each pose's outline to the answer
    answer: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Batcher:
    """Gathers concurrent requests into batches of up to ``max_batch`` images, waiting at most ``max_wait_s``
    after the first, and predicts each batch in one worker thread call."""

    def __init__(self, predictor: PosePredictor, max_batch: int, max_wait_s: float) -> None:
        self.predictor = predictor
        self.box = Box.from_config(predictor.config)  # the object the outlines draw
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.queue: asyncio.Queue[_Request] = asyncio.Queue()
        self.task: asyncio.Task | None = None

    async def predict(self, image: np.ndarray, camera: Camera | None, outline: bool = False) -> tuple[dict, int]:
        """The image's JSON record (with ``outline``: its camera and the poses' outlines) and the size of the batch
        it was predicted in."""
        request = _Request(image, camera, outline)
        await self.queue.put(request)
        return await request.answer

    async def run(self) -> None:
        """Forever: take the next request, gather more until the batch is full or the wait is over, predict."""
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch and (left := deadline - loop.time()) > 0:
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except TimeoutError:
                    break
            try:
                answers = await asyncio.to_thread(self._predict, batch)
            except Exception as err:  # a failure of the model itself: every waiting request gets a 500
                logger.exception("prediction failed for a batch of %d", len(batch))
                for request in batch:
                    if not request.answer.done():
                        request.answer.set_exception(err)
                continue
            for request, answer in zip(batch, answers, strict=True):
                if not request.answer.done():  # a client that went away leaves a cancelled future
                    request.answer.set_result((answer, len(batch)))

    def _predict(self, batch: list[_Request]) -> list[dict]:
        """JSON records of a batch, one ``predict_items`` call per distinct camera (in the worker thread)."""
        groups: dict[Camera | None, list[int]] = defaultdict(list)
        for index, request in enumerate(batch):
            groups[request.camera].append(index)
        answers: list[dict] = [{} for _ in batch]
        for camera, indices in groups.items():
            images = [batch[i].image for i in indices]
            parts = self.predictor.predict_items(images, keep_going=True, camera=camera)
            poses = _concatenated(list(parts))
            for position, index in enumerate(indices):
                record = as_json_record("request", poses, position)
                record.pop("image")
                if batch[index].outline and "poses" in record:
                    self._outline(record, batch[index])
                answers[index] = record
        return answers

    def _outline(self, record: dict, request: _Request) -> None:
        """Add the camera the poses hold for (the image's pixels; none where the model records no training camera)
        and each pose's outline as that camera sees it (None: behind the camera)."""
        height, width = request.image.shape[:2]
        try:
            camera = self.predictor.frame_camera(request.camera, (width, height), "the request's image")[1]
        except CubeposeError:  # no camera given and none recorded: the poses cannot be drawn
            return
        record["camera"] = [float(value) for value in camera]
        for pose, outline in zip(record["poses"], pose_outlines(record["poses"], camera, self.box), strict=True):
            pose["outline"] = None if outline is None else outline.as_json()


def _concatenated(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """``predict_items``' batches as one: arrays concatenated, per-image lists joined."""
    joined: dict[str, Any] = {}
    for key in parts[0]:
        values = [part[key] for part in parts]
        joined[key] = np.concatenate(values) if isinstance(values[0], np.ndarray) else sum(values, [])
    return joined


class BadRequest(CubeposeError):
    """Input the service refuses: its status code and the reason, which names the fix."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def decode_image(body: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A request body as uint8 RGB; an empty, unreadable or oversized image is a BadRequest naming why."""
    if not body:
        raise BadRequest(400, "the request body is empty; send one PNG, JPEG or PPM image as the body")
    try:
        with Image.open(io.BytesIO(body)) as image:  # reads the header only: the size is checked before decoding
            width, height = image.size
            if width * height > max_pixels:
                raise BadRequest(
                    413, f"the image is {width}x{height} pixels, more than {max_pixels:,}; send a smaller image"
                )
            return np.asarray(as_rgb(image))
    except Image.DecompressionBombError:  # PIL's own guard, for headers far beyond any limit given
        raise BadRequest(413, f"the image has more than {max_pixels:,} pixels; send a smaller image") from None
    except UnidentifiedImageError:  # PIL's message names only its in-memory buffer
        raise BadRequest(400, "the body is not a PNG, JPEG or PPM image; send the encoded image") from None
    except (OSError, SyntaxError) as err:
        raise BadRequest(
            400, f"the body is not a readable PNG, JPEG or PPM image ({err}); send the encoded image"
        ) from None


async def bounded_body(request: Request, limit: int) -> bytes:
    """The request's body, refused with 413 as soon as its declared length or the bytes streamed so far pass
    ``limit``: a chunked body without a Content-Length is held to the same limit, never read whole first."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"the body is {int(declared):,} bytes, more than {limit:,}; send a smaller image")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"the body is more than {limit:,} bytes; send a smaller image")
        chunks.append(chunk)
    return b"".join(chunks)


def request_camera(query: dict[str, str]) -> Camera | None:
    """The camera of the query's ``fx``, ``fy``, ``cx``, ``cy`` (all or none) and optional ``distortion``
    (OpenCV's k1,k2,p1,p2[,k3[,k4,k5,k6]], comma-separated), checked; None without them."""
    given = [key for key in KEYS if key in query]
    if not given:
        if DISTORTION_KEY in query:
            raise BadRequest(400, "a distortion needs its camera: give fx, fy, cx and cy in pixels of the image too")
        return None
    if len(given) != len(KEYS):
        missing = ", ".join(key for key in KEYS if key not in query)
        raise BadRequest(400, f"a camera needs fx, fy, cx and cy in pixels of the image; missing {missing}")
    keyed: dict[str, Any] = {key: query[key] for key in KEYS}
    if DISTORTION_KEY in query:
        keyed[DISTORTION_KEY] = query[DISTORTION_KEY].split(",")
    try:
        return Camera.from_mapping(keyed)
    except CameraError as err:
        raise BadRequest(400, f"bad camera: {err}") from None


FLAG_VALUES = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def request_flag(query: dict[str, str], name: str) -> bool:
    """A yes/no query parameter (false when absent); any other value is a BadRequest naming the accepted ones."""
    value = query.get(name, "false").lower()
    if value not in FLAG_VALUES:
        raise BadRequest(400, f"{name} must be true or false (or 1/0, yes/no), got {query[name]!r}")
    return FLAG_VALUES[value]


def model_identity(predictor: PosePredictor, checkpoint: str, local_file: Path) -> dict[str, Any]:
    """What ``GET /model`` reports: where the checkpoint came from, its SHA-256, step and network settings."""
    digest = hashlib.sha256()
    with open(local_file, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return {
        "checkpoint": checkpoint,
        "sha256": digest.hexdigest(),
        "global_step": predictor.global_step,
        "network": predictor.config["network"],
        "max_instances": predictor.config["data"]["max_instances"],
        "training_camera": predictor.training_camera,
    }


def create_app(
    predictor: PosePredictor,
    identity: dict[str, Any],
    max_batch: int = MAX_BATCH,
    max_wait_ms: float = MAX_WAIT_MS,
    max_body_bytes: int = MAX_BODY_MB << 20,
    max_pixels: int = MAX_PIXELS,
    camera: Camera | None = None,
):
    """The FastAPI application serving ``predictor``; ``camera``: the images' camera when a request gives none
    (None: the model's training camera)."""
    batcher = Batcher(predictor, max_batch, max_wait_ms / 1000)
    default_camera = camera

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.task = asyncio.create_task(batcher.run())
        yield
        batcher.task.cancel()  # uvicorn has answered every request in flight by now
        logger.info("stopped: every request in flight was answered")

    app = FastAPI(title="cubepose", lifespan=lifespan)

    @app.middleware("http")
    async def access_log(request: Request, call_next):
        start = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:
            logger.exception("unhandled error on %s %s", request.method, request.url.path)
            response = JSONResponse({"error": "internal error; see the service's log"}, status_code=500)
        entry = {
            "method": request.method,
            "path": request.url.path,
            "status": response.status_code,
            "ms": round(1000 * (time.perf_counter() - start), 2),
            "client": request.client.host if request.client else None,
            "batch": response.headers.get("x-batch-size"),
        }
        access_logger.info(json.dumps(entry))
        return response

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE / "index.html", headers={"Content-Security-Policy": PAGE_POLICY})

    app.mount("/page", StaticFiles(directory=PAGE), name="page")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        running = batcher.task is not None and not batcher.task.done()
        return JSONResponse({"ready": running}, status_code=200 if running else 503)

    @app.get("/model")
    async def model() -> dict:
        return identity

    @app.post("/predict")
    async def predict(request: Request):
        try:
            outline = request_flag(dict(request.query_params), "outline")
            body = await bounded_body(request, max_body_bytes)
            camera = request_camera(dict(request.query_params)) or default_camera
            if camera is None and predictor.takes_camera and predictor.training_camera is None:
                raise BadRequest(
                    400, "this model's checkpoint records no training camera; give the image's fx, fy, cx and cy"
                )
            image = decode_image(body, max_pixels)
        except BadRequest as err:
            return JSONResponse({"error": str(err)}, status_code=err.status)
        except ClientDisconnect:  # the client left mid-body: nobody to answer, nothing wrong with the service
            logger.info("a client disconnected before sending its whole body")
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        record, size = await batcher.predict(image, camera, outline)
        status = 422 if "error" in record else 200  # read, but no pose: another camera, or a broken model
        return JSONResponse(record, status_code=status, headers={"x-batch-size": str(size)})

    return app


# (option, value range) of the numeric options: each must be finite and inside its range, or the service refuses
# to start (an infinite wait never answers, an infinite body limit cannot be compared with a body's size)
LIMITS = {
    "--max-batch": (1, 4096),
    "--max-wait-ms": (0, 60_000),
    "--max-request-mb": (1 / 1024, 4096),
    "--max-image-pixels": (1, 1 << 32),
}


def check_limits(max_batch: int, max_wait_ms: float, max_request_mb: float, max_image_pixels: int) -> None:
    """Refuse a numeric option that is not finite or outside ``LIMITS``, naming it and its range."""
    given = dict(zip(LIMITS, (max_batch, max_wait_ms, max_request_mb, max_image_pixels), strict=True))
    for option, value in given.items():
        low, high = LIMITS[option]
        if not (math.isfinite(value) and low <= value <= high):
            raise CubeposeError(f"{option} must be a finite number from {low:g} to {high:g}, got {value:g}")


def serve(
    checkpoint: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "cpu",
    max_batch: int = MAX_BATCH,
    max_wait_ms: float = MAX_WAIT_MS,
    sha256: str | None = None,
    cache_dir: str | None = None,
    max_request_mb: float = MAX_BODY_MB,
    max_image_pixels: int = MAX_PIXELS,
    camera: str | None = None,
) -> None:
    """Load the checkpoint once and serve it until SIGINT or SIGTERM (requests in flight are answered);
    bodies above ``max_request_mb`` MiB and images above ``max_image_pixels`` pixels are refused. ``camera``: a
    camera file (cubepose.data.calibration) for requests that give no camera, read before the checkpoint."""
    import uvicorn

    from cubepose.storage import fetch

    check_limits(max_batch, max_wait_ms, max_request_mb, max_image_pixels)
    default_camera = None if camera is None else read_calibration(camera)
    local = fetch(checkpoint, cache_dir, sha256)
    predictor = PosePredictor.load(local, device, batch_size=max_batch)
    identity = model_identity(predictor, checkpoint, local)
    body_bytes = int(max_request_mb * (1 << 20))
    app = create_app(predictor, identity, max_batch, max_wait_ms, body_bytes, max_image_pixels, default_camera)
    logger.info(
        "serving %s on http://%s:%d (batches of up to %d, %g ms wait)", checkpoint, host, port, max_batch, max_wait_ms
    )
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")
