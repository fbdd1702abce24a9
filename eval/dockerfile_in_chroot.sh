#!/usr/bin/env bash
# Check the CPU Dockerfile's recipe where no Docker engine runs: a Debian bookworm root (the
# python:3.11-slim-bookworm image's distribution) made with debootstrap gets the Dockerfile's apt
# packages and build context, runs its `make setup`, then, as the image's non-root uid, renders
# data with `cubepose generate`, trains with `edflow -t` and evaluates with configs/test.yaml.
# Differences from a real build: Debian's python3.11 instead of the image's /usr/local one, and
# torch 2.13.0 from $WHEELS (this machine's CPU wheel) instead of the PyTorch CPU index.
#
#   sudo bash eval/dockerfile_in_chroot.sh [ROOTFS]     (needs root and debootstrap; about 5 min)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOTFS=${1:-/tmp/cubepose-rootfs}
WHEELS=${WHEELS:-/opt/wheels}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
CA=${CA:-/etc/ssl/certs/ca-certificates.crt}   # this machine's CA bundle, for pip inside the root
UID_IN_IMAGE=$(sed -n 's/^USER \([0-9]*\):.*/\1/p' "$REPO/Dockerfile")
PACKAGES=$(sed -n 's/.*apt-get install -y --no-install-recommends \([^\\]*\).*/\1/p' "$REPO/Dockerfile")

step() { echo "== $*" >&2; }
cleanup() { for m in opt/wheels dev/shm dev proc; do umount "$ROOTFS/$m" 2>/dev/null || true; done; }
trap cleanup EXIT

step "debootstrap bookworm into $ROOTFS"
[ -x "$ROOTFS/usr/bin/apt-get" ] || debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >/dev/null
mkdir -p "$ROOTFS/proc" "$ROOTFS/dev" "$ROOTFS/opt/wheels" "$ROOTFS/etc/ssl/host"
mount --bind /proc "$ROOTFS/proc"
mount --bind /dev "$ROOTFS/dev"
mount --bind /dev/shm "$ROOTFS/dev/shm"
mount --bind "$WHEELS" "$ROOTFS/opt/wheels"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
cp "$CA" "$ROOTFS/etc/ssl/host/ca.crt"

step "apt-get install $PACKAGES python3.11 python3.11-venv ca-certificates"
chroot "$ROOTFS" sh -c "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends $PACKAGES python3.11 python3.11-venv ca-certificates >/dev/null"

step "the set-up layer's files, then make setup"
rm -rf "$ROOTFS/app" && mkdir -p "$ROOTFS/app/cubepose"
cp "$REPO"/{Makefile,requirements.txt,constraints-build.txt,setup.py} "$ROOTFS/app/"
cp "$REPO/cubepose/__init__.py" "$ROOTFS/app/cubepose/"
chroot "$ROOTFS" sh -c "cd /app && PIP_NO_CACHE_DIR=1 PIP_FIND_LINKS=/opt/wheels \
  REQUESTS_CA_BUNDLE=/etc/ssl/host/ca.crt SSL_CERT_FILE=/etc/ssl/host/ca.crt make setup PYTHON=python3.11 >/tmp/setup.log"

step "the code, the non-root user uid $UID_IN_IMAGE and its logs folder"
cp -r "$REPO/cubepose" "$REPO/configs" "$ROOTFS/app/"
find "$ROOTFS/app/cubepose" -name __pycache__ -prune -exec rm -rf {} +
chroot "$ROOTFS" sh -c "id -u cubepose >/dev/null 2>&1 || useradd --create-home --uid $UID_IN_IMAGE cubepose; \
  mkdir -p /app/logs && rm -rf /app/logs/* /tmp/cube && chown cubepose:cubepose /app/logs && mkdir -p -m 1777 /gcs /minio /s3"

step "as uid $UID_IN_IMAGE: generate, train, evaluate"
chroot --userspec="$UID_IN_IMAGE:$UID_IN_IMAGE" "$ROOTFS" env HOME=/home/cubepose PATH=/app/.venv/bin:/usr/bin:/bin sh -euc '
cd /app
touch /minio/artifact && rm /minio/artifact  # where the KFP launcher writes outputs
pip list 2>/dev/null | grep -E "^torch "
for split in train:1 validation:2 test:3; do
  cubepose generate /tmp/cube/${split%%:*} --count 16 --seed ${split##*:} --image-size 32 --workers 1 2>&1 | tail -n 1
done
small="--network/image_size 32 --batch_size 8 --test_batch_size 8 --n_data_processes 1"
edflow -n image -b configs/base.yaml configs/cpu.yaml -t --num_steps 2 $small \
  --data/train/root /tmp/cube/train --data/validation/root /tmp/cube/validation >/tmp/train.log 2>&1
run=$(ls -d logs/*_image)
edflow -b configs/base.yaml configs/cpu.yaml configs/test.yaml -p "$run" $small --data/test/root /tmp/cube/test >/tmp/eval.log 2>&1
cubepose metrics "$run" | head -n 3
ls -ld "$run"
'
step "ok: the Dockerfile recipe sets up and runs as uid $UID_IN_IMAGE"
