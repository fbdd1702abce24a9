"""A ROS node that turns a camera's image topic into pose topics, as DOPE and Isaac ROS do, via `cubepose serve`.

It subscribes to ``sensor_msgs/Image`` (or, with ``--compressed``, ``sensor_msgs/CompressedImage``) and the
camera's ``sensor_msgs/CameraInfo``, posts each image with that camera (its intrinsics and lens distortion) to a
running ``cubepose serve``, and publishes, stamped with the image's header (time and ``frame_id``):

- ``~pose``, ``geometry_msgs/PoseStamped``: one message per instance found, strongest first (DOPE's topic);
- ``~poses``, ``geometry_msgs/PoseArray``: every instance of the frame in one message, empty when none is found
  (``vision_msgs/Detection3DArray`` is not packaged by Debian, so this documented array stands in for it).

Poses are in the image's optical frame (REP 103: x right, y down, z forward): cubepose's camera frame has y up,
so a translation (x, y, z) is published as (x, -y, z) and a quaternion (x, y, z, w) as (-x, y, -z, w), the
object's own y axis mirrored with the camera's (the box is the same box). A pose the model withholds (a solve
that cannot be right) is not published. Images come in faster than poses go out when the camera outpaces the
service: the node keeps only the newest image, drops the ones it had no time for and logs how many, so poses
always describe a recent frame instead of a growing backlog. Like the service node it needs only Debian's ROS
Python packages and the standard library: run it with the system's ``python3 -m cubepose.serving.ros_topics``.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
import urllib.parse

from cubepose.geometry.conventions import OPENCV_PIXEL_SHIFT
from cubepose.serving.ros_node import DEFAULT_MAX_PIXELS, ImageError, PoseClient, image_as_ppm

DISTORTION_MODELS = ("plumb_bob", "rational_polynomial")  # what cubepose undistorts (cubepose.geometry.distortion)
RECTIFIED_MODELS = ("", "none")  # a driver's camera_info of images that are already rectified
DROP_LOG_SECONDS = 10.0  # dropped frames are reported at most this often


class CameraInfoError(ValueError):
    """A CameraInfo cubepose cannot use; the message names the field and the fix."""


def camera_query(info, rectified: bool = False) -> dict[str, str]:
    """``cubepose serve``'s camera query parameters from a ``sensor_msgs/CameraInfo``: K (or, for ``rectified``
    images, P) with the half-pixel shift to cubepose's pixel centres, and D as ``distortion`` unless all zero."""
    matrix = list(info.P)[:3] + list(info.P)[4:7] if rectified else list(info.K)[:6]
    fx, _, cx, _, fy, cy = matrix
    if not (fx > 0 and fy > 0):
        source = "P" if rectified else "K"
        raise CameraInfoError(f"camera_info {source} has no focal lengths ({matrix}); is the camera calibrated?")
    query = {"fx": repr(fx), "fy": repr(fy), "cx": repr(cx + OPENCV_PIXEL_SHIFT), "cy": repr(cy + OPENCV_PIXEL_SHIFT)}
    coefficients = [float(value) for value in info.D]
    if rectified or info.distortion_model in RECTIFIED_MODELS or not any(coefficients):
        return query
    if info.distortion_model not in DISTORTION_MODELS:
        raise CameraInfoError(
            f"camera_info distortion_model {info.distortion_model!r} is not read by cubepose: calibrate with "
            f"{' or '.join(DISTORTION_MODELS)}, or subscribe to the rectified image with --rectified"
        )
    return {**query, "distortion": ",".join(repr(value) for value in coefficients)}


def optical_pose(translation: list[float], quaternion: list[float]) -> tuple[list[float], list[float]]:
    """A cubepose pose (camera y up) in the ROS optical frame (y down): the mirror F = diag(1, -1, 1) applied to
    the camera and the object, t -> F t, R -> F R F, which for a quaternion negates x and z."""
    x, y, z = translation
    qx, qy, qz, qw = quaternion
    return [x, -y, z], [-qx, qy, -qz, qw]


class NewestFrame:
    """A one-slot mailbox between the subscriber (which puts) and the worker (which takes): a put over an image
    not yet taken replaces it, and counts it as dropped."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._message = None
        self.received = self.dropped = 0

    def put(self, message) -> None:
        with self._condition:
            self.received += 1
            self.dropped += self._message is not None
            self._message = message
            self._condition.notify()

    def take(self, timeout: float):
        """The newest image, or None after ``timeout`` seconds without one."""
        with self._condition:
            if self._message is None:
                self._condition.wait(timeout)
            message, self._message = self._message, None
            return message


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m cubepose.serving.ros_topics", description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:8000", help="cubepose serve's address")
    parser.add_argument("--image", default="/camera/color/image_raw", help="the image topic")
    parser.add_argument("--compressed", action="store_true", help="subscribe to IMAGE/compressed (JPEG or PNG)")
    parser.add_argument("--camera-info", help="the CameraInfo topic (default: camera_info beside the image topic)")
    parser.add_argument(
        "--rectified", action="store_true", help="the images are rectified: use camera_info's P, no distortion"
    )
    parser.add_argument("--node-name", default="cubepose", help="ROS node name; topics are ~pose and ~poses")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="largest image accepted")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each image's poses")
    parser.add_argument("--wait-ready", type=float, default=60.0, help="seconds to wait for cubepose serve")
    return parser.parse_args(argv)


def camera_info_topic(image_topic: str) -> str:
    """``camera_info`` in the image topic's namespace (``/camera/color/image_raw`` -> ``/camera/color/camera_info``)."""
    namespace = image_topic.rstrip("/").rsplit("/", 1)[0]
    return f"{namespace}/camera_info"


def main(argv: list[str] | None = None) -> None:
    """Publish the poses of the image topic until ROS shuts down."""
    import rospy
    from geometry_msgs.msg import Point, Pose, PoseArray, PoseStamped, Quaternion
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    args = parse_arguments(rospy.myargv(sys.argv if argv is None else argv)[1:])
    client = PoseClient(args.server, None, args.timeout)
    try:
        client.wait_until_ready(args.wait_ready)
    except RuntimeError as err:
        sys.exit(f"error: {err}")
    rospy.init_node(args.node_name)
    single = rospy.Publisher("~pose", PoseStamped, queue_size=10)
    array = rospy.Publisher("~poses", PoseArray, queue_size=10)
    camera: dict[str, dict[str, str] | str | None] = {"query": None, "error": None}
    frames = NewestFrame()

    def on_camera_info(info) -> None:
        try:
            camera["query"], camera["error"] = camera_query(info, args.rectified), None
        except CameraInfoError as err:
            camera["query"], camera["error"] = None, str(err)

    def body_of(message) -> bytes:
        if args.compressed:
            return bytes(message.data)
        return image_as_ppm(
            message.encoding, message.height, message.width, message.step, message.data, args.max_pixels
        )

    def publish(header, poses: list[dict]) -> None:
        found = []
        for pose in poses:
            position, orientation = optical_pose(pose["translation"], pose["quaternion"])
            found.append(Pose(position=Point(*position), orientation=Quaternion(*orientation)))
        for item in found:
            single.publish(PoseStamped(header=header, pose=item))
        array.publish(PoseArray(header=header, poses=found))

    def work() -> None:
        last_report, reported = -math.inf, 0  # the first drop is reported at once
        while not rospy.is_shutdown():
            message = frames.take(timeout=0.5)
            if message is None:
                continue
            if camera["query"] is None:
                why = camera["error"] or f"no camera_info received yet on {info_topic}"
                rospy.logwarn_throttle(10, f"cubepose: image dropped: {why}")
                continue
            try:
                poses = client.poses(body_of(message), "?" + urllib.parse.urlencode(camera["query"]))
            except (ImageError, RuntimeError) as err:
                rospy.logwarn_throttle(10, f"cubepose: no poses for an image: {err}")
                continue
            publish(message.header, [pose for pose in poses if pose.get("found") is not False])
            now = time.monotonic()
            if frames.dropped > reported and now - last_report >= DROP_LOG_SECONDS:
                rospy.loginfo(
                    f"cubepose: dropped {frames.dropped} of {frames.received} images so far: the camera outpaces "
                    "cubepose serve, so only the newest image is used"
                )
                last_report, reported = now, frames.dropped

    image_topic = f"{args.image.rstrip('/')}/compressed" if args.compressed else args.image
    info_topic = args.camera_info or camera_info_topic(args.image)
    rospy.Subscriber(info_topic, CameraInfo, on_camera_info, queue_size=1)
    image_type = CompressedImage if args.compressed else Image
    rospy.Subscriber(image_topic, image_type, frames.put, queue_size=1, buff_size=1 << 26)
    worker = threading.Thread(target=work, name="cubepose-poses", daemon=True)
    worker.start()
    rospy.loginfo(f"cubepose: poses of {image_topic} (camera {info_topic}) on ~pose and ~poses via {args.server}")
    rospy.spin()
    rospy.loginfo(f"cubepose: {frames.received} images received, {frames.dropped} dropped")


if __name__ == "__main__":
    main()
