"""One run: its configuration, the burst loop, checkpoints, the feature cache and what it measures."""
