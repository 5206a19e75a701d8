"""A host application of the tests: its own kind, Celery app and task, tracked by jobpulse."""
