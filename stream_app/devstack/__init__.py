"""The development stack, never imported by the worker: the embedded Tansu broker and Redis server, a Faust
worker subprocess, fault-injecting proxies, and the demo and chaos harnesses built on them."""
