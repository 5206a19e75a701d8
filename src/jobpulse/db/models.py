"""Tables. The DB holds the durable record; live progress lives in Redis only.

Jobs and videos are two tables with one lifecycle: both carry :class:`Tracked`'s columns (owner, state,
input, timestamps), so one repository class moves either through its states.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "ImportRow", "Job", "Tracked", "Video"]


class Base(DeclarativeBase):
    """The declarative base of every table."""


class Tracked:
    """The columns of anything a worker processes: owner, state at the last transition, input, times."""

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(32))
    percent: Mapped[float | None] = mapped_column(Float)
    error_reason: Mapped[str | None] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    input_filename: Mapped[str] = mapped_column(String(255))
    input_size_bytes: Mapped[int] = mapped_column(BigInteger)
    input_content_type: Mapped[str | None] = mapped_column(String(255))
    input_data: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # a JSON kind's input document
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # starts by a worker, counted by start()
    retry_of: Mapped[str | None] = mapped_column(String(36))  # the FAILED job this one retries
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Job(Tracked, Base):
    """A submitted job of any kind whose resource is ``jobs`` (every kind but ``video``)."""

    __tablename__ = "jobs"

    kind: Mapped[str] = mapped_column(String(32))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the kind's own shape

    __table_args__ = (
        Index("ix_jobs_owner_created", "owner", "created_at", "id"),
        Index("ix_jobs_state", "state"),
        Index("ix_jobs_finished", "finished_at"),
    )


class Video(Tracked, Base):
    """An uploaded video: what the probe found, and the renditions and thumbnail made from it."""

    __tablename__ = "videos"

    kind: ClassVar[str] = "video"

    duration_seconds: Mapped[float | None] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    video_codec: Mapped[str | None] = mapped_column(String(64))
    audio_codec: Mapped[str | None] = mapped_column(String(64))
    frame_rate: Mapped[float | None] = mapped_column(Float)
    # [{"name", "width", "height", "bitrate", "bytes"}], in the order they were made.
    renditions: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    thumbnail: Mapped[str | None] = mapped_column(String(255))  # its file name, under the video's folder

    __table_args__ = (
        Index("ix_videos_owner_created", "owner", "created_at", "id"),
        Index("ix_videos_state", "state"),
        Index("ix_videos_finished", "finished_at"),
    )


class ImportRow(Base):
    """One valid row of a spreadsheet import, as JSON keyed by column name."""

    __tablename__ = "import_rows"

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)  # no FK: see migration 0001
    row_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
