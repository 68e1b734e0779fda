"""The ``upscaler`` console script: one entry point, one module per command."""
