"""Training (needs the `train` extra: torch, torchvision)."""
