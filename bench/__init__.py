"""Benchmarks: runnable scripts, not part of the test run (see README.md)."""
