"""Serving poses to robots: the HTTP service (``cubepose serve``) and the ROS node that answers Unity's
tutorial service through it. No model logic: both call cubepose.inference."""
