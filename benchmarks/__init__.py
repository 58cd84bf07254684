"""Scaling benchmarks: per-sample time and peak memory versus |W| (``python -m benchmarks``)."""
