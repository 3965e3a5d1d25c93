"""Where runs train: the job manager (threads), the trainer process, Ray Tune, and their one interface."""
