"""Helpers that both tests/ and benchmarks/ use, so that neither imports the other: the
seed, the signing helpers and simulated stores (`simulators/`: Shopify and WooCommerce over
real HTTPS), the mixed-load generator, and the process helpers that run `astra serve` and
embedded PostgreSQL. Imports neither tests nor benchmarks.
"""
