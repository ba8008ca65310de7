"""The visual branch service (see service.py)."""
