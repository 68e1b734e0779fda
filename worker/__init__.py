"""Celery worker side: the job pipeline and the super-resolution engines."""
