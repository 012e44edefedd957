"""synapse-stream core: SYNAPSE-G (arXiv 2508.09544) as a pure-Python library.

No Faust or Kafka here: everything can be run, tested and benchmarked in memory.
"""
__version__ = "0.1.0"
