"""The ``jobpulse`` command: ``up`` for the embedded all-in-one run, the parts of a real deployment
(``serve``, ``worker``, ``migrate``, ``prune``, ``token create``), and the client (``submit``,
``watch``, ``status``, ``delete``, ``retry``, ``kinds``, from :mod:`jobpulse.client.cli`). Server
modules are imported by the commands that use them, so the client commands start fast."""

from __future__ import annotations

import os
import signal
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from jobpulse.auth import mint_token
from jobpulse.client.cli import LOCAL_MINTER
from jobpulse.client.cli import commands as client_commands
from jobpulse.errors import ConfigurationError, JobpulseError
from jobpulse.settings import Settings, private_dir

if TYPE_CHECKING:
    from jobpulse.supervisor import ProcessGroup

__all__ = ["main"]

_LOCAL_USER = "local"  # the user `jobpulse up` prints a token for

_DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Data folder [JOBPULSE_DATA_DIR or .jobpulse]",
)


def _settings(data_dir: Path | None) -> Settings:
    if data_dir is not None:
        os.environ["JOBPULSE_DATA_DIR"] = str(data_dir)
    try:
        return Settings()
    except ValueError as exc:
        raise click.ClickException(f"invalid settings: {exc}") from exc


def _server_settings(data_dir: Path | None) -> Settings:
    """Settings for a server process (up, serve, worker, migrate, prune), whose files are private.

    The data dir holds every tenant's uploads and outputs (and, embedded, the database and the secret):
    it is made 0700, and the process's umask 077 keeps what it and its children (ffmpeg, Redis, SQLite)
    create there readable by this user only.
    """
    os.umask(0o077)
    settings = _settings(data_dir)
    private_dir(settings.data_dir)
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """jobpulse: live progress for background jobs."""
    ctx.meta[LOCAL_MINTER] = _local_token


def _local_token() -> str | None:
    """A token for the local user, for client commands given none; None if this machine has no secret."""
    try:
        secret = Settings().require_secret_key()
    except (ConfigurationError, ValueError):
        return None
    return mint_token(secret, _LOCAL_USER, 3600)


for _command in client_commands():
    main.add_command(_command)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@_DATA_DIR
def up(host: str, port: int, data_dir: Path | None) -> None:
    """Run everything: Redis (unless REDIS_URL is set), migrations, the API and one worker."""
    from jobpulse.db.engine import create_db_engine
    from jobpulse.db.migrate import upgrade
    from jobpulse.embedded import RedisCommand
    from jobpulse.supervisor import ProcessGroup

    settings = _server_settings(data_dir)
    try:
        secret = settings.ensure_secret_key()
    except ConfigurationError as exc:
        raise click.ClickException(exc.message) from exc
    group = ProcessGroup()
    env = dict(os.environ, JOBPULSE_SECRET_KEY=secret, JOBPULSE_DATA_DIR=str(settings.data_dir.resolve()))

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    try:
        if settings.redis_url is None:
            redis_server = RedisCommand(settings.data_dir)
            group.start("redis", redis_server.argv, env)
            redis_server.wait_ready()
            env["REDIS_URL"] = redis_server.url
        env["DATABASE_URL"] = settings.resolved_database_url
        upgrade(create_db_engine(env["DATABASE_URL"]))
        me = [sys.executable, "-m", "jobpulse"]
        group.start("api", [*me, "serve", "--host", host, "--port", str(port)], env)
        group.start("worker", [*me, "worker"], env)
        url = f"http://{host}:{port}"
        _wait_http(f"{url}/healthz", group)
        token = mint_token(secret, _LOCAL_USER, 30 * 86400)
        click.echo(f"jobpulse is up at {url}  (Ctrl-C stops it)")
        click.echo(f"token for user 'local': {token}")
        click.echo(f'try: curl -H "Authorization: Bearer $TOKEN" {url}/jobs/')
        name, code = group.wait_any()
        click.echo(f"jobpulse: {name} exited with code {code}; stopping", err=True)
        code = code or 1
    except SystemExit as exc:
        code = 0 if exc.code in (128 + signal.SIGINT, 128 + signal.SIGTERM) else 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        group.stop()
    sys.exit(code)


def _wait_http(url: str, group: ProcessGroup, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, child in group.children:
            if child.poll() is not None:
                raise click.ClickException(f"{name} exited during start-up (code {child.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 (our own localhost URL)
                return
        except OSError:
            time.sleep(0.1)
    raise click.ClickException(f"the API did not answer at {url}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1), help="Server processes")
@click.option("--server", type=click.Choice(["granian", "uvicorn"]), default="granian", show_default=True)
@_DATA_DIR
def serve(host: str, port: int, workers: int, server: str, data_dir: Path | None) -> None:
    """Run the API server (REDIS_URL, DATABASE_URL and JOBPULSE_SECRET_KEY from the environment).

    Tuned without flags (docs/operations.md): uvloop, hiredis, no cap below the file descriptor limit
    on open connections, which is raised to its hard limit; with ``--workers`` above 1, /metrics sums
    every process's counts.
    """
    from jobpulse.serving import BACKLOG, granian_server, metrics_dir, raise_fd_limit

    settings = _server_settings(data_dir)
    try:
        settings.require_redis_url()
        settings.require_secret_key()
    except ConfigurationError as exc:
        raise click.ClickException(exc.message) from exc
    fds = raise_fd_limit()
    click.echo(f"jobpulse serve: file descriptor limit {fds}", err=True)
    target = "jobpulse.api.app:app_from_env"
    with metrics_dir(workers) as shared:
        if shared is not None:
            click.echo(f"jobpulse serve: the processes share their metrics through {shared}", err=True)
        if server == "uvicorn":
            import uvicorn

            # uvicorn picks uvloop and httptools when installed.
            uvicorn.run(
                target,
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level="warning",
                backlog=BACKLOG,
            )
            return
        granian_server(target, host, port, workers, fds).serve()


@main.command()
@click.option("--queues", default=None, help="Comma-separated queues [all]")
@click.option("--concurrency", type=int, default=None, help="Pool processes [CPU count]")
@_DATA_DIR
def worker(queues: str | None, concurrency: int | None, data_dir: Path | None) -> None:
    """Run a Celery worker for the jobs of every registered kind (docs/kinds.md)."""
    from jobpulse.worker.app import create_worker_app

    settings = _server_settings(data_dir)
    try:
        app = create_worker_app(settings)
    except ConfigurationError as exc:
        raise click.ClickException(exc.message) from exc
    argv = ["worker", "--without-mingle", "--without-gossip", "--without-heartbeat", "--loglevel", "INFO"]
    argv += ["--queues", queues or ",".join(app.conf.jobpulse_kinds.queues())]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    app.worker_main(argv)


@main.command()
@_DATA_DIR
def migrate(data_dir: Path | None) -> None:
    """Create or upgrade the database schema."""
    from jobpulse.db.engine import create_db_engine
    from jobpulse.db.migrate import upgrade

    settings = _server_settings(data_dir)
    upgrade(create_db_engine(settings.resolved_database_url))
    click.echo("database is up to date")


@main.command()
@click.option(
    "--older-than-days",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Remove what ended more than this many days ago [JOBPULSE_RETENTION_DAYS]",
)
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing")
@_DATA_DIR
def prune(older_than_days: float | None, dry_run: bool, data_dir: Path | None) -> None:
    """Remove terminal jobs and videos past the retention period: records, rows, files, progress."""
    from jobpulse.db.engine import create_db_engine
    from jobpulse.db.repository import JobRepository, VideoRepository
    from jobpulse.progress.connection import sync_redis
    from jobpulse.retention import prune as prune_records

    settings = _server_settings(data_dir)
    if older_than_days is None and settings.retention_days == 0:
        click.echo("retention is off (JOBPULSE_RETENTION_DAYS=0); pass --older-than-days to prune anyway")
        return
    engine = create_db_engine(settings.resolved_database_url)
    # Without REDIS_URL (embedded, stopped) progress records are left to expire on their own.
    redis_client = sync_redis(settings) if settings.redis_url else None
    try:
        report = prune_records(
            settings,
            JobRepository(engine),
            VideoRepository(engine),
            redis_client,
            older_than_days=older_than_days,
            dry_run=dry_run,
        )
    except JobpulseError as exc:
        raise click.ClickException(exc.message) from exc
    finally:
        engine.dispose()
        if redis_client is not None:
            redis_client.close()
    click.echo(report.summary())


@main.group()
def token() -> None:
    """Bearer tokens."""


@token.command("create")
@click.argument("user")
@click.option(
    "--ttl", default=None, type=int, help="Seconds until it expires [JOBPULSE_TOKEN_DEFAULT_TTL_SECONDS]"
)
@_DATA_DIR
def token_create(user: str, ttl: int | None, data_dir: Path | None) -> None:
    """Print a token for USER, signed with the deployment's secret."""
    settings = _settings(data_dir)
    try:
        secret = settings.require_secret_key()
    except ConfigurationError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(mint_token(secret, user, ttl or settings.token_default_ttl_seconds))
