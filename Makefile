# cubepose: every target sets up .venv (Python 3.11, pinned deps) on first use.
# Set-up is stamped, so later runs skip it unless the requirement files change.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cubepose-installed
# Python 3.11 still ships distutils; numpy 1.23's numpy.distutils (imported by
# chainer) needs it instead of setuptools' copy. A .pth file in the venv sets this
# for every process, so `edflow` works without the user exporting anything.
COMPAT_PTH := $(VENV)/lib/python3.11/site-packages/cubepose_distutils_stdlib.pth

DEMO_DATA  := data/cube
DEMO_COUNT ?= 10000
DEMO_STEPS ?= 1250
DEMO_CONFIGS := configs/base.yaml configs/cpu.yaml configs/zoom_cpu.yaml

# Debian's ROS 1 packages for the ROS node and its test (the test is skipped, saying so, without them)
ROS_PACKAGES := ros-core python3-rospy python3-genpy python3-sensor-msgs python3-geometry-msgs \
	ros-sensor-msgs ros-geometry-msgs ros-std-msgs

.PHONY: setup test lint format demo clean ros-deps browser-deps

setup: $(STAMP)

$(STAMP): requirements.txt constraints-build.txt setup.py Makefile
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11'" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	rm -f $(COMPAT_PTH)
	# chainer ships only an sdist whose setup needs pkg_resources: build it alone
	# under setuptools<70 (the constraint reaches pip's isolated build env).
	PIP_CONSTRAINT=$(CURDIR)/constraints-build.txt $(BIN)/pip install --no-deps chainer==7.8.1
	$(BIN)/pip install -r requirements.txt
	# edflow 0.4.0 declares Pillow<7; it runs with a current Pillow, so no deps.
	$(BIN)/pip install --no-deps edflow==0.4.0
	$(BIN)/pip install --no-deps --no-build-isolation -e .
	echo "import os, warnings; os.environ.setdefault('SETUPTOOLS_USE_DISTUTILS', 'stdlib'); warnings.filterwarnings('ignore', 'pkg_resources is deprecated')" > $(COMPAT_PTH)
	$(BIN)/python -c "import chainer, edflow.iterators.batches, torch, cubepose"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff format --check cubepose tests eval setup.py
	$(BIN)/ruff check cubepose tests eval setup.py
	$(BIN)/hadolint Dockerfile Dockerfile.gpu

format: $(STAMP)
	$(BIN)/ruff format cubepose tests eval setup.py
	$(BIN)/ruff check --fix cubepose tests eval setup.py

# Tests marked `alone` time themselves: they run after the others, when nothing else competes for the cores
test: $(STAMP) lint
	$(BIN)/python -m pytest -q -rs --durations=15 -n auto --maxprocesses 4 -m "not alone" tests
	$(BIN)/python -m pytest -q -rs -m alone tests

# As root (or with sudo): the Debian packages the ROS node runs with
ros-deps:
	apt-get install -y --no-install-recommends $(ROS_PACKAGES) || \
	{ apt-get update && apt-get install -y --no-install-recommends $(ROS_PACKAGES); }

# As root (or with sudo): Debian's headless browser for the page's test (skipped, saying so, without it)
browser-deps:
	apt-get install -y chromium chromium-driver || \
	{ apt-get update && apt-get install -y chromium chromium-driver; }

# Generate the synthetic dataset once (the roots configs/base.yaml points at), then train the
# zoom-in CPU recipe for DEMO_STEPS steps (about 5 minutes on 2 cores), evaluate its last
# checkpoint on the test split and print the metrics table and the report's path. A larger
# DEMO_COUNT extends data/cube/train; a smaller one needs `rm -r data/cube` first.
$(DEMO_DATA)/.complete-$(DEMO_COUNT): | $(STAMP)
	$(BIN)/cubepose generate $(DEMO_DATA)/train --count $(DEMO_COUNT) --seed 1
	$(BIN)/cubepose generate $(DEMO_DATA)/validation --count 300 --seed 2
	$(BIN)/cubepose generate $(DEMO_DATA)/test --count 300 --seed 3
	touch $@

demo: $(STAMP) $(DEMO_DATA)/.complete-$(DEMO_COUNT)
	$(BIN)/edflow -n demo -b $(DEMO_CONFIGS) -t --num_steps $(DEMO_STEPS)
	run=$$(ls -td logs/*_demo | head -n 1) && \
	$(BIN)/edflow -b $(DEMO_CONFIGS) configs/test.yaml -p $$run && \
	$(BIN)/cubepose metrics $$run

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
