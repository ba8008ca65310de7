"""Fusion trainer for `python -m training train --branch fusion` (training.fusion.train)."""

from training.fusion.train import add_arguments, run

__all__ = ["add_arguments", "run"]
