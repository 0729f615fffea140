# Two commands do everything on a fresh machine: `make study` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# test runs keep their records and caches away from the committed results/
TEST_RESULTS ?= $(CURDIR)/.cache/test-results
NBVAL  := --nbval-lax --nbval-current-env --nbval-sanitize-with .ci/nbval_sanitize.cfg
# an AVX2-only CPU, emulated on any x86 CPU: oneDNN and ATen capped at AVX2, so handlib's
# precision "auto" resolves to fp32 (see handlib.train.loop.cpu_has_bf16)
AVX2   := ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2

.PHONY: study test test-avx2 pytest nbval nbval-avx2 golden lint bench clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (handlib .venv)"
	touch $(STAMP)

study: $(STAMP)
	$(PY) -m handlib.study --params params/quick.yaml

test: $(STAMP)
	$(PY) -m pytest tests/
	HANDLIB_RESULTS=$(TEST_RESULTS) $(PY) -m pytest $(NBVAL) notebooks/

# the same suite as on an AVX2-only fp32 CPU: the goldens must hold on both kinds (.ci/run runs both)
test-avx2: $(STAMP)
	$(AVX2) $(PY) -m pytest tests/
	$(AVX2) HANDLIB_RESULTS=$(TEST_RESULTS)-avx2 $(PY) -m pytest $(NBVAL) notebooks/

nbval-avx2: $(STAMP)
	$(AVX2) HANDLIB_RESULTS=$(TEST_RESULTS)-avx2 $(PY) -m pytest $(NBVAL) notebooks/

pytest: $(STAMP)
	$(PY) -m pytest tests/

nbval: $(STAMP)
	HANDLIB_RESULTS=$(TEST_RESULTS) $(PY) -m pytest $(NBVAL) notebooks/

golden: $(STAMP)  ## re-execute notebooks (NB=...) at smoke parameters, keep small outputs
	HANDLIB_RESULTS=$(TEST_RESULTS) $(PY) .ci/golden.py $(or $(NB),notebooks/*.ipynb)

lint: $(STAMP)
	$(PY) -m ruff check handlib tests

bench: $(STAMP)
	$(PY) -m handlib.bench render --size 128
	$(PY) -m handlib.bench cache
	$(PY) -m handlib.bench train --size 128 --batch 32

clean-venv:
	rm -rf $(VENV)
