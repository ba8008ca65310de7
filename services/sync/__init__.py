"""The sync branch service (see service.py)."""
