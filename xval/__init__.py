"""Glue shared by tests and benchmarks: the engine registry and comparison (settings: ``manual.config``)."""
