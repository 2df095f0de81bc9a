"""Helpers that both tests/ and benchmarks/ use, so that neither imports the other: the
seed, the store simulators that sign webhooks, the mixed-load generator, and the process
helpers that run `astra serve` and embedded PostgreSQL. Imports neither tests nor benchmarks.
"""
