"""Trainer for the sync branch (`python -m training train --branch sync`): training.sync.train."""

from training.sync.train import add_arguments, run

__all__ = ["add_arguments", "run"]
