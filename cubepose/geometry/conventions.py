"""Conventions other tools use for the same quantities, stated once and importable without numpy or torch (the ROS
nodes run on a robot's system Python).

OpenCV and ROS put pixel centres on whole numbers, cubepose (like Unity) half a pixel in: the same camera's
principal point cx, cy is ``OPENCV_PIXEL_SHIFT`` larger in cubepose's numbers.
"""

OPENCV_PIXEL_SHIFT = 0.5  # cubepose's cx, cy minus OpenCV's (and ROS camera_info's) for the same camera
