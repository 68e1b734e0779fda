"""Alembic migrations; ``shared.migrate.upgrade`` runs them (``upscaler migrate``)."""
