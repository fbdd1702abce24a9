"""Package definition of cubepose; pinned dependencies live in requirements.txt."""

from setuptools import find_packages, setup

setup(
    name="cubepose",
    version="0.1.0",
    description="6-DoF cube pose estimation from one RGB image, as an edflow plugin",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["cubepose", "cubepose.*"]),
    package_data={"cubepose.serving": ["page/*"]},  # the browser page `cubepose serve` answers at /
    install_requires=[
        "numpy==1.23.5",
        "torch==2.13.0",
        "edflow==0.4.0",
        "chainer==7.8.1",
        "pillow",
        "pyyaml",
        "tqdm",
        "tensorboardX",
        "google-cloud-storage",
        "boto3",
        "fastapi",
        "uvicorn",
        "moderngl",
        "roma",
        "kornia",
        "opencv-python-headless==4.11.0.86",
        "scikit-image==0.22.0",  # its bundled real photographs: the photos test look
    ],
    extras_require={"onnx": ["onnx", "onnxscript", "onnxruntime"]},  # cubepose export --format onnx
    entry_points={"console_scripts": ["cubepose = cubepose.cli:main"]},
)
