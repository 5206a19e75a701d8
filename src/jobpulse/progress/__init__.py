"""Live progress in Redis: the record, the store, the worker's reporter and lease."""
