# kfcn: `make demo` runs the main job, `make test` the test suite. Both create .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kfcn-installed

.PHONY: demo test test-fast test-tensorflow test-jax test-torch test-wheel lint clean web-runtime web test-web

# Tests run in WORKERS processes (pytest-xdist; CI's machine has 2 cores): while one test waits on
# a process it started or on single-threaded Python, the other core runs the next test.
# `make test WORKERS=0` runs them all in one process.
WORKERS ?= 2
PYTEST := $(PY) -m pytest -p no:cacheprovider -n $(WORKERS) --dist worksteal

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[jax,torch,test,deploy,onnx,hub]"
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
	KERAS_BACKEND=tensorflow $(PYTEST) -q -x -m "not slow" --durations=10

# --durations=30: the slowest tests of each run are printed, so growth is seen.
test-tensorflow: $(STAMP)
	KERAS_BACKEND=tensorflow $(PYTEST) --durations=30

test-jax: $(STAMP)
	KERAS_BACKEND=jax $(PYTEST) -m backend tests --durations=30

test-torch: $(STAMP)
	KERAS_BACKEND=torch $(PYTEST) -m backend tests --durations=30

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

# Every README figure and table from the shipped files, in a few minutes on 2 cores:
#   tables between <!-- table:NAME --> markers in README.md and saved_models/README.md, from
#   saved_models/*.json (docs/make_tables.py; tests/test_figures.py checks them); docs/models.md;
#   docs/images/isbi_comparison.png, isbi_overlays.png, erf_unet_isbi.png and isbi_errors.png (with
#   saved_models/unet_isbi_error_analysis.json, which the model's card shows) from the shipped ISBI U-Net; vgg_cells_counting.png and camvid_predictions.png from the shipped counter and
#   CamVid U-Net on the datasets in $(SHARED_DATA) (skipped, with a note, where they are absent).
# Not redrawn here: the figures of networks that are not shipped, which only each example's
# full training run makes (its --figure; commands in the README's applications table):
#   isbi_restoration.png (restore_isbi.py, ~10 min), galaxy_components.png
#   (galaxy_decomposition.py, ~16 min), touching_instances.png (touching_instances.py, ~14 min),
#   contour_robustness.png (contour_robustness.py --seeds 0 1, ~50 min).
# Nor the browser page's screenshot, web_page.png, which needs the LiteRT.js runtime and Chromium
# (`make web-runtime`, then benchmarks/web_latency.py --screenshot docs/images/web_page.png).
SHARED_DATA ?= ../shared/datasets
FIGURE_PY := KERAS_BACKEND=tensorflow $(PY)

.PHONY: figures
figures: $(STAMP)
	$(PY) docs/make_tables.py
	$(FIGURE_PY) docs/make_docs.py
	$(FIGURE_PY) examples/tiling_figure.py
	$(FIGURE_PY) examples/make_gallery.py
	$(FIGURE_PY) examples/erf_figure.py
	$(FIGURE_PY) examples/isbi_error_analysis.py --log saved_models/unet_isbi_training.csv
	if [ -d $(SHARED_DATA)/vgg_cells ]; then $(FIGURE_PY) examples/counting_figure.py --data $(SHARED_DATA)/vgg_cells; \
	else echo "kept docs/images/vgg_cells_counting.png: no $(SHARED_DATA)/vgg_cells"; fi
	if [ -d $(SHARED_DATA)/camvid ]; then $(FIGURE_PY) examples/camvid_figure.py --data $(SHARED_DATA)/camvid; \
	else echo "kept docs/images/camvid_predictions.png: no $(SHARED_DATA)/camvid"; fi

# The web page (`kfcn export MODEL --format web`). Its runtime, LiteRT.js (@litertjs/core), comes from
# the npm registry at the versions pinned in web/package-lock.json (with playwright-core, which drives
# the browser test), and is vendored into kfcn/export/web_assets/litert/ (ignored by git, ~19 MB of
# WebAssembly): exports then need no Node.js, and a wheel built afterwards carries it.
NODE_MODULES := web/node_modules/.package-lock.json

$(NODE_MODULES): web/package.json web/package-lock.json
	cd web && npm ci --ignore-scripts --no-audit --no-fund

web-runtime: $(STAMP) $(NODE_MODULES)
	$(PY) -c "from kfcn.export.web import vendor_runtime; print('vendored', vendor_runtime('web/node_modules'))"

# The pages of the shipped ISBI U-Net and cell counter, with their held-out scores:
# build/web/isbi and build/web/counter (`kfcn serve-web build/web/isbi` serves one).
web: web-runtime
	KERAS_BACKEND=tensorflow $(PY) examples/web_pages.py --output build/web

# The browser test (about a minute on 2 cores; not part of `make test`, whose Node.js smoke of the
# page's rules is tests/export/test_web.py): Debian's Chromium, installed here where missing, driven
# headless by playwright-core from web/node_modules.
CHROMIUM ?= /usr/bin/chromium

test-web: $(STAMP) $(NODE_MODULES)
	[ -x $(CHROMIUM) ] || { if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y chromium; \
	else sudo apt-get update && sudo apt-get install -y chromium; fi; }
	CHROMIUM=$(CHROMIUM) KFCN_BROWSER_TESTS=1 KERAS_BACKEND=tensorflow $(PY) -m pytest -p no:cacheprovider \
	tests/browser --durations=10

lint: $(STAMP)
	$(PY) -m ruff check kfcn tests examples benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build dist $(WHEEL_VENV) web/node_modules kfcn/export/web_assets/litert
