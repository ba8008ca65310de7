"""Preprocessing that training and serving share, defined once and free of torch.

What a model was trained on is exactly what it is served: face and mouth crop geometry
(`geometry`), tensor layout and normalization (`tensors`), CQCC and audio windows
(`audio`), and the clip-level statistics every branch reports (`stats`).
"""
