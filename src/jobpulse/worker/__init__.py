"""Celery workers: the app factory, the shared job lifecycle, and one module per job kind."""
