"""Benchmark-only shim, loaded by a worker whose PYTHONPATH includes this folder (see bench/stack.py).

Faust creates its Kafka consumer with ``fetch_max_wait_ms=1500`` (hard-coded). A real Kafka broker answers a
fetch as soon as one byte is there (``fetch_min_bytes=1``); the embedded Tansu broker holds every fetch for
the full wait, so each post waits up to 1.5 s between the broker and the worker. With
``SYNAPSE_BENCH_FETCH_MAX_WAIT_MS`` set, this shim lowers that wait, to measure the worker's latency as it
would be on a broker that answers at once. It changes nothing else and is never used outside the benchmark.
"""
import os

_wait = os.environ.get("SYNAPSE_BENCH_FETCH_MAX_WAIT_MS")
if _wait:
    import aiokafka

    _init = aiokafka.AIOKafkaConsumer.__init__

    def _patched(self, *args, **kwargs):
        kwargs["fetch_max_wait_ms"] = int(_wait)
        _init(self, *args, **kwargs)

    aiokafka.AIOKafkaConsumer.__init__ = _patched
