"""The PyTorch architectures of the image-side branches (and their registry by name)."""
