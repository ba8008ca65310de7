"""Where training reads and writes, and the reproducibility switches every run uses."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNS_DIR = Path(os.environ.get("DFMESH_RUNS_DIR", REPO_ROOT / "runs"))
"""Checkpoints, caches and logs (gitignored)."""
MODELS_DIR = Path(os.environ.get("DFMESH_MODEL_REPO", REPO_ROOT / "models"))


def shared_data_dir() -> Path:
    """../shared/data next to the repository, or DFMESH_SHARED_DATA."""
    env = os.environ.get("DFMESH_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def seed_everything(seed: int, threads: int = 1) -> None:
    """Fix Python, numpy and torch seeds and torch's thread count (the machine is shared)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
