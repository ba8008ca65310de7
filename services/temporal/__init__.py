"""The temporal branch service (see service.py)."""
