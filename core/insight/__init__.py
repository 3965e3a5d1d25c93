"""Looking at trained models: analysis, attributions, the Inside view, figures and trackers."""
