"""Serving poses to robots and people: the HTTP service (``cubepose serve``) and its browser page, the ROS nodes
(Unity's tutorial service, image topics), video streams and tracking. No model logic: they call cubepose.inference."""
