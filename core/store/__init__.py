"""Runs on disk: their configs, curves, checkpoints and the models they trained."""
