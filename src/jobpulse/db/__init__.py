"""The database: the durable record of jobs and the rows they import (SQLAlchemy 2, Alembic)."""
