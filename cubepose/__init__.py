"""cubepose: 6-DoF pose of a cube from one RGB image, trained and evaluated with edflow."""

__version__ = "0.1.0"
