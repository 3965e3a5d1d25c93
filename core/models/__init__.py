"""Backbones, their pretrained weights, and the local model zoo."""
