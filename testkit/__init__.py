"""Helpers shared by the test suites: simulated stores and the like."""
