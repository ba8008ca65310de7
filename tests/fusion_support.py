"""A model repository for orchestrator tests (devkit.known_models): the shipped models when
models/ holds a complete release, otherwise small real ONNX models with known outputs and a
real scikit-learn fusion bundle with every head."""

from __future__ import annotations

from devkit.known_models import (
    COUNT_SCALE,
    EMBEDDING_SIZE,
    KNOWN_MODELS,
    build_fusion_bundle,
    build_test_repo,
    shipped,
)

__all__ = ["COUNT_SCALE", "EMBEDDING_SIZE", "KNOWN_MODELS", "build_fusion_bundle",
           "build_test_repo", "shipped"]
