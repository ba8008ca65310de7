"""Fusion: clip-level dataset scored by every shipped ONNX model, calibrated LR heads, bundle."""
