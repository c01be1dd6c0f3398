# Two set-up commands: `make demo` and `make test`. Both create .venv from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench lint clean

$(BIN)/.jaxgap-installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "jaxgap needs Python 3.11+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.jaxgap-installed
	$(BIN)/jaxgap reproduce --out runs/demo $(if $(wildcard runs/demo/settings.json),--resume)
	@echo "report: runs/demo/report.html (self-contained), runs/demo/report.md, runs/demo/results.json"

lint: $(BIN)/.jaxgap-installed
	$(BIN)/ruff check jaxgap tests benchmarks examples scripts notebooks conftest.py .ci

# The suite in float32 with the docstring examples of every jaxgap module (python -m jaxgap
# would run the CLI), then the float64 checks in a process of their own. The versions are
# printed first (never fails the run). tests/test_multidevice.py starts its own 8-device
# process. The suite is compile-bound (XLA compiles on one core): pytest-xdist runs one
# worker per core, and the examples share its workers (and their warm caches). The 25
# slowest tests are listed at the end (where the time budget goes: docs/test_time.md).
test: lint
	-$(BIN)/python .ci/versions.py
	$(BIN)/python -m pytest -q -n auto -m "not x64" --doctest-modules tests jaxgap \
		--ignore=jaxgap/__main__.py --durations=25
	JAX_ENABLE_X64=1 $(BIN)/python -m pytest -q -m x64

bench: $(BIN)/.jaxgap-installed
	$(BIN)/python benchmarks/empirical_denoiser.py
	$(BIN)/python benchmarks/empirical_memory.py
	$(BIN)/python benchmarks/gap_curve.py
	$(BIN)/python benchmarks/devices.py
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/ensemble.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
