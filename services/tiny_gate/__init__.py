"""The tiny_gate branch service (see service.py)."""
