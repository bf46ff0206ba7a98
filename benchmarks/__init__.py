"""Shoal's benchmark harness: Shoal side by side with moto and s3rver, plus this machine's limits.

Run with ``python -m benchmarks`` (``--help`` for workloads, peers and ``--quick``). Not part of the test suite.
"""
