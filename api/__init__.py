"""The Flask API. ``create_app(settings=None)`` is the only way to build it (no import-time state)."""

from api.app import create_app

__all__ = ["create_app"]
