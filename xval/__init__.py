"""Glue shared by tests and benchmarks: settings from ``XVAL_*``, the engine registry, and comparison."""
