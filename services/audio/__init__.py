"""The audio branch service (see service.py)."""
