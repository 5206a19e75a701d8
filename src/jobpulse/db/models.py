"""Tables. The DB holds the durable record; live progress lives in Redis only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "ImportRow", "Job"]


class Base(DeclarativeBase):
    """The declarative base of every table."""


class Job(Base):
    """A submitted job: its owner, state at the last transition, input and result."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(32))
    percent: Mapped[float | None] = mapped_column(Float)
    error_reason: Mapped[str | None] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    input_filename: Mapped[str] = mapped_column(String(255))
    input_size_bytes: Mapped[int] = mapped_column(BigInteger)
    input_content_type: Mapped[str | None] = mapped_column(String(255))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_jobs_owner_created", "owner", "created_at", "id"),)


class ImportRow(Base):
    """One valid row of a spreadsheet import, as JSON keyed by column name."""

    __tablename__ = "import_rows"

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)  # no FK: see migration 0001
    row_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
