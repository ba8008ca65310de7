"""dfmesh: the shared runtime, preprocessing and command line of the deepfake detection mesh."""

__version__ = "0.1.0"
