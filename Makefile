# kfcn: `make demo` runs the main job, `make test` the test suite. Both create .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kfcn-installed

.PHONY: demo test test-fast test-tensorflow test-jax test-torch test-wheel lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[jax,torch,test,deploy,onnx,cv]"
	touch $(STAMP)

demo: $(STAMP)
	KERAS_BACKEND=tensorflow $(PY) examples/segment_isbi.py

# The whole suite on TensorFlow, then every backend-sensitive test (marker `backend`:
# layers, losses, metrics, models, inference, analysis) on JAX and PyTorch, then the
# quick start against the built wheel.
test: test-tensorflow test-jax test-torch test-wheel

# Before each commit: everything on TensorFlow but the slow modules (tests/conftest.py), lint first.
test-fast: $(STAMP)
	$(PY) -m ruff check kfcn tests examples benchmarks
	KERAS_BACKEND=tensorflow $(PY) -m pytest -p no:cacheprovider -q -x -m "not slow" --durations=10

# --durations=30: the slowest tests of each run are printed, so growth is seen.
test-tensorflow: $(STAMP)
	KERAS_BACKEND=tensorflow $(PY) -m pytest -p no:cacheprovider --durations=30

test-jax: $(STAMP)
	KERAS_BACKEND=jax $(PY) -m pytest -p no:cacheprovider -m backend tests --durations=30

test-torch: $(STAMP)
	KERAS_BACKEND=torch $(PY) -m pytest -p no:cacheprovider -m backend tests --durations=30

# Builds the wheel, installs it with its declared dependencies (from the package index) in a
# venv of its own, and runs the quick start there from outside the repository: catches files
# or dependencies the wheel lacks. The venv is made afresh whenever pyproject.toml changes (so
# always on a clean CI machine); kfcn itself is reinstalled from the new wheel every time.
WHEEL_VENV ?= /tmp/kfcn-wheel-venv
WHEEL_STAMP := $(WHEEL_VENV)/.kfcn-dependencies

$(WHEEL_STAMP): pyproject.toml
	rm -rf $(WHEEL_VENV)
	$(PYTHON) -m venv $(WHEEL_VENV)
	touch $(WHEEL_STAMP)

test-wheel: $(STAMP) $(WHEEL_STAMP)
	rm -rf build dist
	$(PY) -m pip wheel --no-deps --quiet -w dist .
	$(WHEEL_VENV)/bin/python -m pip uninstall --quiet --yes kfcn 2>/dev/null || true
	$(WHEEL_VENV)/bin/python -m pip install --quiet dist/kfcn-*.whl
	cd $(WHEEL_VENV) && KERAS_BACKEND=tensorflow bin/python $(CURDIR)/.ci/wheel_quickstart.py

lint: $(STAMP)
	$(PY) -m ruff check kfcn tests examples benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build dist $(WHEEL_VENV)
