"""Audio branch trainer for `python -m training train --branch audio` (training.audio.train)."""

from training.audio.train import add_arguments, run

__all__ = ["add_arguments", "run"]
