# Two entry points: `make serve` runs the service, `make test` passes the tests (and builds the
# docs site and runs the tutorial notebooks). Both create .venv and install the pinned
# dependencies if needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev


.PHONY: test-cluster
.PHONY: serve test lint typecheck pytest docs notebooks fuzz bench bench-gpu loadtest soak screenshots clean install install-dev

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP_RUN): $(PY) pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt -e .
	touch $@

$(STAMP_DEV): $(PY) pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	touch $@ $(STAMP_RUN)

install: $(STAMP_RUN)
install-dev: $(STAMP_DEV)

serve: $(STAMP_RUN)
	$(VENV)/bin/cnnlens serve --host $(HOST) --port $(PORT)

lint: $(STAMP_DEV)
	$(VENV)/bin/ruff check cnnlens tests benchmarks
	$(VENV)/bin/ruff format --check cnnlens tests benchmarks

typecheck: $(STAMP_DEV)
	$(VENV)/bin/mypy

pytest: $(STAMP_DEV)
	$(PY) -m pytest -q -p no:cacheprovider

# The docs site, offline and strict, into cnnlens/service/site: the service serves it at /guide.
docs: $(STAMP_DEV)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# The tutorial notebooks in docs/notebooks, run as they are committed (without outputs).
notebooks: $(STAMP_DEV)
	$(PY) -m pytest -q -p no:cacheprovider --nbmake --nbmake-timeout=1800 docs/notebooks

test: lint typecheck docs pytest notebooks

# The tests on a local two-node Ray cluster alone (make test runs them too).
test-cluster: $(STAMP_DEV)
	$(PY) -m pytest -q -p no:cacheprovider tests/audit/test_ray_cluster.py

# Long random fuzzing of the decoder (not part of make test, which runs derandomized).
fuzz: $(STAMP_DEV)
	HYPOTHESIS_PROFILE=fuzz CNNLENS_FUZZ_SCALE=$${CNNLENS_FUZZ_SCALE:-50} $(PY) -m pytest -q -p no:cacheprovider \
		tests/reliability/test_fuzz.py -k "not schemathesis"

bench: $(STAMP_DEV)
	$(PY) -m benchmarks.run $(if $(FIGURES),--figures $(FIGURES)) $(ARGS)

# The GPU figures and tests in one run, on a machine with a CUDA device (benchmarks/gpu.sh).
bench-gpu: $(STAMP_DEV)
	PY=$(PY) bash benchmarks/gpu.sh

loadtest: $(STAMP_DEV)
	$(PY) -m benchmarks.loadtest

soak: $(STAMP_DEV)
	$(PY) -m benchmarks.soak

# docs/screenshots/*.png: every view of the web page, in headless Chromium with the network off.
screenshots: $(STAMP_DEV)
	$(PY) -m tests.web.screenshots

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache cnnlens/service/site
