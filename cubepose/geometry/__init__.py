"""Geometry of poses and cameras, self-contained (it imports no other cubepose module): ``rotations``
(quaternions x, y, z, w and the canonical sign w >= 0), ``projection`` (pinhole intrinsics, Unity's
projection matrix), ``camera`` (the one Camera class), ``symmetries`` (the object's rotation groups),
``object`` (the Box and its default size), ``rays`` (torch: the viewing-ray rotation), ``distortion`` (lens
distortion on pixels) and ``conventions`` (other tools' pixel centres)."""
