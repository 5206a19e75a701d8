"""The HTTP API: FastAPI for the DB-backed endpoints, a lean ASGI layer for the progress read path."""
