"""Retention: terminal jobs and videos are removed ``retention_days`` after they ended, with everything
that belongs to them (the DB record, a spreadsheet's imported rows, the upload and media folders, the
progress record), and so are upload and media folders that no record owns.

:func:`prune` is what ``jobpulse prune`` runs and what the workers run every ``prune_interval_seconds``;
:func:`remove_files` is shared with ``DELETE /jobs/{id}/``.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from jobpulse.db.repository import JobRepository, RecordRepository, VideoRepository, utcnow
from jobpulse.ids import is_job_id
from jobpulse.keys import Keyspace
from jobpulse.progress.store import redis_errors
from jobpulse.settings import Settings

__all__ = ["PruneReport", "prune", "remove_files"]

log = logging.getLogger(__name__)


@dataclass
class PruneReport:
    """What a pass removed (or, in a dry run, would remove)."""

    cutoff: datetime | None = None  # records that ended before this go; None: retention is off
    dry_run: bool = False
    jobs: int = 0
    videos: int = 0
    rows: int = 0  # imported rows of the removed spreadsheet jobs
    files: int = 0  # upload and media folders of the removed records
    orphans: int = 0  # upload and media folders that no record owned

    def summary(self) -> str:
        """One line for logs and the CLI."""
        verb = "would remove" if self.dry_run else "removed"
        if self.cutoff is None:
            return "retention is off (retention_days = 0): nothing removed"
        return (
            f"{verb} {self.jobs} jobs ({self.rows} rows), {self.videos} videos, {self.files} folders "
            f"and {self.orphans} orphaned folders that ended before {self.cutoff.isoformat()}"
        )


def remove_files(settings: Settings, record_id: str) -> int:
    """Remove the upload and media folders of ``record_id`` (an id jobpulse issued); how many existed."""
    assert is_job_id(record_id)
    removed = 0
    for folder in (settings.upload_dir / record_id, settings.media_dir / record_id):
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def prune(
    settings: Settings,
    jobs: JobRepository,
    videos: VideoRepository,
    redis_client: redis.Redis | None,
    *,
    now: datetime | None = None,
    older_than_days: float | None = None,
    dry_run: bool = False,
    batch_size: int = 500,
) -> PruneReport:
    """Remove terminal jobs and videos that ended more than ``older_than_days`` (default
    ``settings.retention_days``; 0 keeps everything) before ``now``, and orphaned folders as old.

    Works in pages of ``batch_size`` records, oldest first; for each page the progress records go
    first (one pipelined round trip; a Redis failure raises ``ServiceUnavailable`` before the page's
    DB rows are touched), then the DB records with their rows, then the folders. ``redis_client`` None
    skips the progress records (they expire on their own). It takes no lock: two passes at once only
    repeat each other's work (the workers hold ``prune_lock`` around it).
    """
    days = settings.retention_days if older_than_days is None else older_than_days
    if days <= 0:
        return PruneReport(dry_run=dry_run)
    cutoff = (now or utcnow()) - timedelta(days=days)
    report = PruneReport(cutoff=cutoff, dry_run=dry_run)
    keys = Keyspace.from_settings(settings)
    report.jobs, report.rows, job_files = _prune_table(
        settings, jobs, jobs, redis_client, keys, cutoff, dry_run, batch_size
    )
    report.videos, _, video_files = _prune_table(
        settings, videos, jobs, redis_client, keys, cutoff, dry_run, batch_size
    )
    report.files = job_files + video_files
    report.orphans = _prune_orphans(settings, jobs, videos, cutoff, dry_run)
    log.info("prune: %s", report.summary())
    return report


def _prune_table(
    settings: Settings,
    records: RecordRepository[Any],
    jobs: JobRepository,
    redis_client: redis.Redis | None,
    keys: Keyspace,
    cutoff: datetime,
    dry_run: bool,
    batch_size: int,
) -> tuple[int, int, int]:
    """Records, rows and folders of one table removed (or counted)."""
    removed = rows = files = 0
    after: tuple[datetime | None, str] | None = None
    while True:
        page = records.expired_page(cutoff, after=after, limit=batch_size)
        if not page:
            return removed, rows, files
        last = page[-1]
        after = (last.finished_at, last.id)
        ids = [record.id for record in page]
        if records is jobs:
            rows += jobs.count_rows(ids)
        if dry_run:
            removed += len(ids)
            files += sum(_has_files(settings, record_id) for record_id in ids)
            continue
        if redis_client is not None:
            with redis_errors():
                redis_client.delete(*(keys.progress(record_id) for record_id in ids))
        for record_id in ids:
            records.delete(record_id)  # the jobs table's delete takes the rows with it
            files += remove_files(settings, record_id)
        removed += len(ids)


def _has_files(settings: Settings, record_id: str) -> int:
    return sum((root / record_id).is_dir() for root in (settings.upload_dir, settings.media_dir))


def _newest_change(folder: str) -> float:
    """The latest modification time of a folder and its direct entries: an upload being streamed
    (no record yet) keeps touching its file."""
    newest = os.lstat(folder).st_mtime
    with os.scandir(folder) as entries:
        for entry in entries:
            newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
    return newest


def _prune_orphans(
    settings: Settings, jobs: JobRepository, videos: VideoRepository, cutoff: datetime, dry_run: bool
) -> int:
    """Folders named like a job id, unchanged since before ``cutoff``, with no record in either table:
    left by a process killed between writing files and recording them (an upload cut off by a crash),
    or written by a worker after its job was deleted. Anything younger is left alone: an upload in
    progress has no record yet."""
    removed = 0
    limit = cutoff.timestamp()
    for root in (settings.upload_dir, settings.media_dir):
        if not root.is_dir():
            continue
        with os.scandir(root) as entries:
            candidates = [
                entry.name
                for entry in entries
                if is_job_id(entry.name) and entry.is_dir(follow_symlinks=False)
            ]
        for name in candidates:
            folder = Path(root, name)
            try:
                if _newest_change(str(folder)) >= limit:
                    continue
            except FileNotFoundError:
                continue  # removed meanwhile
            if jobs.get(name) is not None or videos.get(name) is not None:
                continue
            if not dry_run:
                shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed
