"""Benchmarks: `python -m bench` (see bench/run.py) and the single-purpose scripts beside it."""
