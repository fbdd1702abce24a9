# cubepose on the CPU: the project installed by `make setup` (Python 3.11, the pinned requirements),
# run as a non-root user, with `edflow` as the command.
#   docker build -t cubepose:cpu .
#   docker run --rm cubepose:cpu -n exp -b configs/base.yaml configs/cpu.yaml -t --data/train/root gs://...
FROM python:3.11.14-slim-bookworm

# make runs the set-up; EGL + Mesa (llvmpipe) let `cubepose generate` render without a display.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri \
    && rm -rf /var/lib/apt/lists/*

# torch==2.13.0 from requirements.txt resolves to the CPU build on this index (2.13.0+cpu), not PyPI's CUDA one.
ENV PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# The set-up layer depends only on what `make setup` reads, so code changes rebuild in seconds.
COPY Makefile requirements.txt constraints-build.txt setup.py ./
COPY cubepose/__init__.py cubepose/__init__.py
RUN make setup PYTHON=python3.11
COPY cubepose cubepose
COPY configs configs

# The KFP v2 launcher writes output artifacts under /gcs, /minio or /s3 (by the pipeline root's scheme)
# as the container's user, so those must be writable for a non-root step.
RUN useradd --create-home --uid 1000 cubepose && mkdir logs && chown cubepose:cubepose logs \
    && mkdir -m 1777 /gcs /minio /s3
# A numeric USER lets Kubernetes check runAsNonRoot without reading /etc/passwd.
USER 1000:1000
ENV PATH=/app/.venv/bin:$PATH
ENTRYPOINT ["edflow"]
CMD ["--help"]
