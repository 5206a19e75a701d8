"""Settings: built once from the environment (or given explicitly) and passed in.

Every setting is read from ``JOBPULSE_<NAME>``; ``REDIS_URL`` and ``DATABASE_URL`` are also accepted
under their plain names, as deployers expect. Nothing here runs at import time.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from jobpulse.errors import ConfigurationError
from jobpulse.media.renditions import LADDER

__all__ = ["MIN_SECRET_BYTES", "Settings", "private_dir"]

_SECRET_FILE = "secret_key"  # noqa: S105 (a file name)
# HS256 wants a key at least as long as its hash (RFC 7518 3.2): 256 bits, 32 bytes.
MIN_SECRET_BYTES = 32


class Settings(BaseSettings):
    """Every knob of jobpulse, with its default. The docs list them (docs/operations.md)."""

    model_config = SettingsConfigDict(env_prefix="JOBPULSE_", populate_by_name=True, extra="ignore")

    # Services. None means the embedded default: a Redis server `jobpulse up` starts, SQLite in data_dir.
    redis_url: str | None = Field(None, validation_alias=AliasChoices("REDIS_URL", "JOBPULSE_REDIS_URL"))
    database_url: str | None = Field(
        None, validation_alias=AliasChoices("DATABASE_URL", "JOBPULSE_DATABASE_URL")
    )
    secret_key: str | None = Field(None, repr=False)
    data_dir: Path = Path(".jobpulse")

    # Redis keyspace and progress record lifetimes.
    key_prefix: str = "jp:"
    progress_ttl_seconds: int = Field(3600, gt=0)  # refreshed on every write while the job is active
    terminal_progress_ttl_seconds: int = Field(86400, gt=0)  # once the job is terminal
    progress_details_max_bytes: int = Field(2048, gt=0)  # a progress record's ``details``, as JSON
    redis_max_connections: int = Field(256, gt=0)
    redis_timeout_seconds: float = Field(2.0, gt=0)

    # Job kinds (docs/kinds.md): modules to import kinds from, besides the installed packages' entry points;
    # comma-separated in the environment ("myapp.kinds,other.module:KIND").
    kind_modules: Annotated[tuple[str, ...], NoDecode] = ()

    # Auth.
    token_cache_seconds: float = Field(60.0, ge=0)  # how long a verified token is trusted in process
    token_cache_size: int = Field(10_000, ge=0)
    token_default_ttl_seconds: int = Field(86400, gt=0)  # `jobpulse token create`

    # The poll_after_ms hint (docs/api.md explains the rule).
    poll_active_ms: int = Field(1000, gt=0)  # a running job whose record moved in the last stall window
    poll_idle_ms: int = Field(3000, gt=0)  # queued, waiting for a GPU, or stalled
    poll_unknown_ms: int = Field(2000, gt=0)  # no record; clients grow their interval themselves
    poll_stall_seconds: float = Field(10.0, gt=0)

    # Uploads and spreadsheet limits.
    max_upload_bytes: int = Field(100 * 1024 * 1024, gt=0)
    spreadsheet_max_uncompressed_bytes: int = Field(500 * 1024 * 1024, gt=0)
    spreadsheet_max_rows: int = Field(1_000_000, gt=0)
    spreadsheet_max_errors: int = Field(100, ge=0)  # errors kept in the result; all are counted
    spreadsheet_batch_rows: int = Field(2000, gt=0)
    spreadsheet_max_columns: int = Field(1000, gt=0)  # checked before the sheet is loaded
    spreadsheet_max_cells: int = Field(20_000_000, gt=0)  # rows x columns of the sheet's used area

    # Request limits (the API; docs/operations.md: "Limits").
    max_json_body_bytes: int = Field(1024 * 1024, gt=0)  # any JSON body (batch, review, JSON jobs)
    max_form_fields: int = Field(16, gt=0)  # plain fields of an upload form, besides the file
    max_form_field_bytes: int = Field(64 * 1024, gt=0)  # each plain field of an upload form
    submit_rate_per_minute: int = Field(120, ge=0)  # submissions per owner per minute; 0: no limit

    # Videos (docs/operations.md: "Video processing").
    video_max_upload_bytes: int = Field(2 * 1024**3, gt=0)
    video_min_duration_seconds: float = Field(0.5, gt=0)
    video_max_duration_seconds: float = Field(4 * 3600, gt=0)
    video_max_dimension: int = Field(4096, gt=0)  # pixels, for width and height alike
    video_renditions: tuple[str, ...] = ("360p", "720p")  # made when a submission names none
    video_preset: str = "veryfast"  # x264's speed/size trade-off
    video_stall_seconds: float = Field(120.0, gt=0)  # ffmpeg silent this long is killed, the video FAILED
    video_probe_timeout_seconds: float = Field(30.0, gt=0)
    video_link_ttl_seconds: int = Field(6 * 3600, gt=0)  # signed file links in a video's record
    file_link_ttl_seconds: int = Field(7 * 86400, gt=0)  # signed links a job's handler makes (JobRun)
    ffmpeg_binary: str = "ffmpeg"  # found on PATH unless a path is given
    ffprobe_binary: str = "ffprobe"

    # OCR (ai_inference; docs/operations.md: "OCR jobs").
    ocr_max_upload_bytes: int = Field(50 * 1024 * 1024, gt=0)
    ocr_max_pixels: int = Field(50_000_000, gt=0)  # larger images are rejected, never decoded
    ocr_min_side_pixels: int = Field(16, gt=0)
    ocr_min_confidence: float = Field(0.8, ge=0, le=1)  # under it a job ends REVIEW_REQUIRED
    ocr_cpu_max_pixels: int = Field(12_000_000, gt=0)  # a CPU worker hands larger images to the GPU queue
    ocr_cpu_time_budget_seconds: float = Field(60.0, gt=0)  # ... and jobs that run longer than this
    ocr_gpu_wait_seconds: float = Field(120.0, gt=0)  # no GPU worker took it by then: run on the CPU
    ocr_threads: int = Field(0, ge=0)  # onnxruntime threads per worker process; 0: one per core

    # Worker.
    reporter_min_interval_seconds: float = Field(0.2, ge=0)  # at most 5 accepted writes/s per job
    job_time_limit_seconds: int = Field(3600, gt=0)
    visibility_timeout_seconds: int = Field(7200, gt=0)  # must exceed job_time_limit_seconds
    job_lock_seconds: int = Field(60, gt=0)  # a running job's lease, renewed every third of it
    worker_concurrency: int | None = Field(None, gt=0)
    publish_timeout_seconds: float = Field(2.0, gt=0)
    job_max_attempts: int = Field(3, gt=0)  # starts of one job (a worker died under it) before FAILED
    finish_retry_seconds: float = Field(30.0, ge=0)  # how long a terminal progress write is retried

    # The reaper and retention (docs/operations.md: "What survives which fault").
    reaper_interval_seconds: float = Field(30.0, ge=0)  # how often a worker looks for lost jobs; 0: never
    retention_days: float = Field(30.0, ge=0)  # terminal jobs, their rows and files; 0: kept forever
    prune_interval_seconds: float = Field(3600.0, gt=0)  # how often retention runs in the workers

    @field_validator("kind_modules", mode="before")
    @classmethod
    def _split_modules(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.visibility_timeout_seconds <= self.job_time_limit_seconds:
            raise ValueError(
                "visibility_timeout_seconds must exceed job_time_limit_seconds, "
                "or a long job would be delivered twice"
            )
        if self.ocr_gpu_wait_seconds >= self.visibility_timeout_seconds:
            raise ValueError(
                "ocr_gpu_wait_seconds must be under visibility_timeout_seconds: the delayed CPU message "
                "waits unacknowledged in a worker for that long, and would be delivered twice"
            )
        unknown = [name for name in self.video_renditions if name not in LADDER]
        if unknown or not self.video_renditions:
            names = ", ".join(LADDER)
            raise ValueError(f"video_renditions must name some of {names}; got {unknown or 'none'}")
        return self

    @property
    def embedded(self) -> bool:
        """True when neither REDIS_URL nor DATABASE_URL is set: jobpulse provides both itself."""
        return self.redis_url is None and self.database_url is None

    @property
    def resolved_database_url(self) -> str:
        """DATABASE_URL, or SQLite in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'jobpulse.db').resolve()}"

    @property
    def upload_dir(self) -> Path:
        """Where uploaded inputs live, one folder per job (shared between API and workers)."""
        return self.data_dir / "uploads"

    @property
    def media_dir(self) -> Path:
        """Where a video's renditions and thumbnail live, one folder per video (shared, like uploads)."""
        return self.data_dir / "media"

    def require_redis_url(self) -> str:
        """REDIS_URL, or a clear error (the embedded Redis is started by `jobpulse up`)."""
        if not self.redis_url:
            raise ConfigurationError("REDIS_URL is not set; run `jobpulse up` for the embedded defaults")
        return self.redis_url

    def require_secret_key(self) -> str:
        """JOBPULSE_SECRET_KEY; in embedded mode, else the key `jobpulse up` generated; else an error.

        A key shorter than :data:`MIN_SECRET_BYTES` is refused: anyone could guess it and mint tokens.
        """
        if self.secret_key:
            key = self.secret_key
        else:
            path = self.data_dir / _SECRET_FILE
            if not (self.embedded and path.is_file()):
                raise ConfigurationError(
                    "JOBPULSE_SECRET_KEY is not set; a deployment must set it (tokens are signed with it)"
                )
            key = path.read_text().strip()
        if len(key.encode()) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"JOBPULSE_SECRET_KEY is too short: use at least {MIN_SECRET_BYTES} random bytes "
                "(for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return key

    def ensure_secret_key(self) -> str:
        """The secret key; in embedded mode one is generated once into the data dir.

        The file is created private (0600) in one step, never written first and restricted after.
        """
        try:
            return self.require_secret_key()
        except ConfigurationError:
            if not self.embedded or self.secret_key:
                raise
        private_dir(self.data_dir)
        path = self.data_dir / _SECRET_FILE
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        descriptor = os.open(path, flags, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(48))
        return self.require_secret_key()


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) readable by this user only (0700), and make it so if it exists.

    The data dir holds every tenant's uploads, renditions and, in embedded mode, the database and the
    secret key: no other local user may read it.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path
