"""Metrics defined once, plots, and the EVALUATION.md report."""
