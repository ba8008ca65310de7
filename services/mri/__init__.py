"""The mri branch service (see service.py)."""
