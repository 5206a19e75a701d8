"""``jobpulse submit | watch | status | delete | retry``: the SDK from a shell, with a live bar and an
exit code by state.

Exit codes (docs/clients.md): 0 SUCCESS or READY, 1 FAILED, 2 usage, 3 REJECTED_BAD_INPUT,
4 REVIEW_REQUIRED, 5 CANCELLED, 6 no such job, 7 not authenticated, 8 deadline passed, 9 any other
error the API answered or an API that cannot be reached; 130 interrupted.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import click
from rich.console import Console

from jobpulse.client.base import DEFAULT_URL, Resource, resource_of
from jobpulse.client.client import Client
from jobpulse.client.display import JobDisplay, summary
from jobpulse.client.progress import Progress
from jobpulse.errors import AuthenticationError, ConfigurationError, DeadlineExceeded, JobpulseError, NotFound
from jobpulse.states import State

__all__ = ["EXIT_CODES", "commands"]

EXIT_CODES: dict[State, int] = {
    State.SUCCESS: 0,
    State.READY: 0,
    State.FAILED: 1,
    State.REJECTED_BAD_INPUT: 3,
    State.REVIEW_REQUIRED: 4,
    State.CANCELLED: 5,
}
EXIT_NOT_FOUND, EXIT_AUTH, EXIT_DEADLINE, EXIT_ERROR, EXIT_INTERRUPTED = 6, 7, 8, 9, 130

_KINDS_BY_SUFFIX = {
    **dict.fromkeys((".xlsx", ".xlsm", ".xls", ".ods", ".csv", ".tsv", ".txt"), "spreadsheet_import"),
    **dict.fromkeys((".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff"), "ai_inference"),
    **dict.fromkeys(
        (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts"),
        "video",
    ),
}
_LOCAL_USER = "local"  # the user `jobpulse up` prints a token for

P = ParamSpec("P")
R = TypeVar("R")


def _connection(command: Callable[P, R]) -> Callable[P, R]:
    """Add ``--url``, ``--token``, ``--timeout`` and ``--json`` to a command."""
    for option in reversed(
        [
            click.option(
                "--url",
                envvar="JOBPULSE_URL",
                default=DEFAULT_URL,
                show_default=True,
                help="API [JOBPULSE_URL]",
            ),
            click.option(
                "--token", envvar="JOBPULSE_TOKEN", default=None, help="Bearer token [JOBPULSE_TOKEN]"
            ),
            click.option(
                "--timeout", type=float, default=None, help="Give up waiting after this many seconds"
            ),
            click.option(
                "--json", "as_json", is_flag=True, help="Print JSON (one record per line) for scripts"
            ),
        ]
    ):
        command = option(command)
    return command


def _token(token: str | None) -> str:
    """The given token, or one minted for the local user from this machine's jobpulse secret."""
    if token:
        return token
    from jobpulse.auth import mint_token
    from jobpulse.settings import Settings

    try:
        secret = Settings().require_secret_key()
    except (ConfigurationError, ValueError):
        raise click.UsageError(
            "no token: pass --token or set JOBPULSE_TOKEN (`jobpulse token create USER` prints one)"
        ) from None
    return mint_token(secret, _LOCAL_USER, 3600)


def _fail(message: str, code: int) -> NoReturn:
    Console(stderr=True).print(f"[red]error:[/] {message}", highlight=False)
    sys.exit(code)


def _errors(command: Callable[P, None]) -> Callable[P, None]:
    """Turn jobpulse errors into a message on stderr and the documented exit code."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except NotFound as exc:
            _fail(exc.message, EXIT_NOT_FOUND)
        except AuthenticationError as exc:
            _fail(f"{exc.message} (check --token / JOBPULSE_TOKEN)", EXIT_AUTH)
        except DeadlineExceeded as exc:
            _fail(exc.message, EXIT_DEADLINE)
        except JobpulseError as exc:
            _fail(exc.message, EXIT_ERROR)
        except KeyboardInterrupt:
            _fail("interrupted; the job goes on", EXIT_INTERRUPTED)

    return run


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False))


def _watch(client: Client, job_id: str, resource: Resource, timeout: float | None, as_json: bool) -> NoReturn:
    """Watch to the end, showing each record; exit with the final state's code."""
    final: Progress | None = None
    if as_json:
        for final in client.watch(job_id, resource, timeout=timeout):
            _print_json(final.as_dict())
    else:
        with JobDisplay(Console(stderr=True), job_id) as display:
            for final in client.watch(job_id, resource, timeout=timeout):
                display.show(final)
    assert final is not None
    if not as_json:
        Console().print(summary(final), highlight=False)
    sys.exit(EXIT_CODES.get(final.state, EXIT_ERROR))


def _locate(client: Client, job_id: str) -> tuple[Resource, Progress | None]:
    """Which resource ``job_id`` is (jobs or videos) and its live record, asking Redis first."""
    live = client.progress_many([job_id])[job_id]
    if live.state is not State.UNKNOWN:
        return resource_of(live.kind), live
    resources: tuple[Resource, ...] = ("jobs", "videos")
    for resource in resources:  # no live record: the DB records say which, if either
        try:
            record = client.record(job_id, resource)
        except NotFound:
            continue
        return resource_of(record.get("kind")), None
    raise NotFound(f"No job {job_id}: it does not exist, or it is not yours.")


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--kind",
    type=click.Choice(["spreadsheet_import", "ai_inference", "video"]),
    default=None,
    help="Job kind [from the file's extension]",
)
@click.option("--options", "options", default=None, help="Options as a JSON object")
@click.option("--watch", "watch", is_flag=True, help="Show progress until the job ends; exit by its state")
@_connection
@_errors
def submit(
    file: Path,
    kind: str | None,
    options: str | None,
    watch: bool,
    url: str,
    token: str | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Upload FILE as a job and print its id (with --watch, follow it to the end)."""
    kind = kind or _KINDS_BY_SUFFIX.get(file.suffix.lower())
    if kind is None:
        raise click.UsageError(f"cannot tell the job kind of {file.name!r} from its extension: pass --kind")
    if options is not None:
        try:
            parsed = json.loads(options)
        except ValueError:
            raise click.BadParameter("not valid JSON", param_hint="--options") from None
        if not isinstance(parsed, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--options")
    with Client(url, token=_token(token)) as client:
        job = client.submit(file, kind=kind, options=options)
        if as_json:
            _print_json(job.as_dict())
        else:
            click.echo(job.id)
        if watch:
            _watch(client, job.id, resource_of(kind), timeout, as_json)


@click.command()
@click.argument("job_id")
@_connection
@_errors
def watch(job_id: str, url: str, token: str | None, timeout: float | None, as_json: bool) -> None:
    """Follow job JOB_ID until it ends; the exit code tells its final state."""
    with Client(url, token=_token(token)) as client:
        resource, _live = _locate(client, job_id)
        _watch(client, job_id, resource, timeout, as_json)


@click.command()
@click.argument("job_id")
@_connection
@_errors
def status(job_id: str, url: str, token: str | None, timeout: float | None, as_json: bool) -> None:
    """Print job JOB_ID's state, progress and result, once."""
    del timeout  # one request each: the client's own timeout applies
    with Client(url, token=_token(token)) as client:
        resource, live = _locate(client, job_id)
        record = client.record(job_id, resource)
        current = live if live is not None else Progress.from_body(record)
        if as_json:
            _print_json({"progress": current.as_dict(), "record": record})
            return
        console = Console()
        console.print(f"[bold]{job_id}[/]  {record['kind']}  {record['input']['filename']}", highlight=False)
        console.print(summary(current), highlight=False)
        if record.get("result"):
            console.print_json(data=record["result"])


@click.command("delete")
@click.argument("job_id")
@_connection
@_errors
def delete_job(job_id: str, url: str, token: str | None, timeout: float | None, as_json: bool) -> None:
    """Delete job JOB_ID for good: its record, rows, files and progress (a running job is cancelled
    first)."""
    del timeout  # one request each: the client's own timeout applies
    with Client(url, token=_token(token)) as client:
        resource, _live = _locate(client, job_id)
        client.delete(job_id, resource)
    if as_json:
        _print_json({"id": job_id, "deleted": True})
    else:
        click.echo(f"deleted {job_id}")


@click.command("retry")
@click.argument("job_id")
@click.option(
    "--watch", "watch", is_flag=True, help="Show progress until the new job ends; exit by its state"
)
@_connection
@_errors
def retry_job(
    job_id: str, watch: bool, url: str, token: str | None, timeout: float | None, as_json: bool
) -> None:
    """Run FAILED job JOB_ID again as a new job and print the new job's id."""
    with Client(url, token=_token(token)) as client:
        resource, _live = _locate(client, job_id)
        job = client.retry(job_id, resource)
        if as_json:
            _print_json(job.as_dict())
        else:
            click.echo(job.id)
        if watch:
            _watch(client, job.id, resource, timeout, as_json)


def commands() -> list[click.Command]:
    """The client commands, for the ``jobpulse`` group."""
    return [submit, watch, status, delete_job, retry_job]
