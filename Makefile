# suture — the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-container bench check lint clean system

## system: the system packages of .ci/packages (installed as root with apt-get; else named, with the command)
system:
	@.ci/setup

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## demo: start the demo app, let it break, watch suture heal it, print the history
demo:
	@.ci/setup venv
	@$(MAKE) --no-print-directory $(STAMP)
	$(BIN)/suture demo

## test: the whole suite (unit, integration, end to end), but not the container build, in TEST_WORKERS
## pytest-xdist workers: most tests wait on processes, sleeps and validation windows rather than on the
## CPU, so 3 workers keep 2 cores busy (more only make the timing tests slower). Bytecode is written
## even if PYTHONDONTWRITEBYTECODE is set: the suite starts a few hundred Python processes (and each
## worker imports every test module), which would otherwise compile every module again each time.
TEST_WORKERS ?= 3
test: system $(STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -m "not container" -n $(TEST_WORKERS) --dist worksteal

## test-container: build the sidecar image with Podman and prove that, in a container, it heals
## another container (tests/test_container_image.py; root; caches in ~/.cache/suture-ci)
test-container: system $(STAMP)
	$(BIN)/python -m pytest -q -m container --durations=0 tests/test_container_image.py

## bench: benchmarks; each prints a table with the command that produced it
bench: $(STAMP)
	$(BIN)/python tests/bench/run.py

## check: lint and types
check: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	$(BIN)/ruff check engine sidecar tests
	@# mypy cannot follow the editable install's import hook: a link named suture lets it resolve suture.*
	mkdir -p $(VENV)/typecheck && ln -sfn $(CURDIR) $(VENV)/typecheck/suture
	cd $(VENV)/typecheck && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p suture.engine -p suture.sidecar

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
