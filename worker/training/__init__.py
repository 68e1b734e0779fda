"""Training the super-resolution network on ``train/`` images only."""
