# kfcn: `make demo` runs the main job, `make test` the test suite. Both create .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kfcn-installed

.PHONY: demo test test-tensorflow test-jax test-torch lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[jax,torch,test]"
	touch $(STAMP)

demo: $(STAMP)
	KERAS_BACKEND=tensorflow $(PY) examples/segment_isbi.py

# The whole suite on TensorFlow, then every backend-sensitive test (marker `backend`:
# layers, losses, metrics, models, inference, analysis) on JAX and PyTorch.
test: test-tensorflow test-jax test-torch

test-tensorflow: $(STAMP)
	KERAS_BACKEND=tensorflow $(PY) -m pytest -p no:cacheprovider

test-jax: $(STAMP)
	KERAS_BACKEND=jax $(PY) -m pytest -p no:cacheprovider -m backend tests

test-torch: $(STAMP)
	KERAS_BACKEND=torch $(PY) -m pytest -p no:cacheprovider -m backend tests

lint: $(STAMP)
	$(PY) -m ruff check kfcn tests examples benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
