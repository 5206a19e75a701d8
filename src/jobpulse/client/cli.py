"""``jobpulse submit | watch | status | delete | retry | kinds``: the SDK from a shell, with a live bar
and an exit code by state.

Exit codes (docs/clients.md): 0 SUCCESS or READY, 1 FAILED, 2 usage (a kind the server does not take
that way included: an unknown kind, a file for a JSON kind), 3 REJECTED_BAD_INPUT, 4 REVIEW_REQUIRED,
5 CANCELLED, 6 no such job, 7 not authenticated, 8 deadline passed, 9 any other error the API answered
or an API that cannot be reached; 130 interrupted.
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
from jobpulse.client.kinds import KindInfo, kinds_for_suffix
from jobpulse.client.status import Progress
from jobpulse.errors import AuthenticationError, DeadlineExceeded, InvalidOptions, JobpulseError, NotFound
from jobpulse.states import State

__all__ = ["EXIT_CODES", "LOCAL_MINTER", "commands"]

EXIT_CODES: dict[State, int] = {
    State.SUCCESS: 0,
    State.READY: 0,
    State.FAILED: 1,
    State.REJECTED_BAD_INPUT: 3,
    State.REVIEW_REQUIRED: 4,
    State.CANCELLED: 5,
}
EXIT_NOT_FOUND, EXIT_AUTH, EXIT_DEADLINE, EXIT_ERROR, EXIT_INTERRUPTED = 6, 7, 8, 9, 130

# Where the ``jobpulse`` group (jobpulse.cli) leaves, in click's ``Context.meta``, a function that mints a
# token for the local user from this machine's secret (None without one): the SDK reads no server settings.
LOCAL_MINTER = "jobpulse.local_minter"

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
    """The given token, or one minted for the local user by the server's CLI (see :data:`LOCAL_MINTER`)."""
    if token:
        return token
    mint: Callable[[], str | None] | None = click.get_current_context().meta.get(LOCAL_MINTER)
    minted = mint() if mint is not None else None
    if minted is None:
        raise click.UsageError(
            "no token: pass --token or set JOBPULSE_TOKEN (`jobpulse token create USER` prints one)"
        )
    return minted


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


def _json_object(text: str | None, option: str) -> dict[str, Any] | None:
    """``text`` parsed as a JSON object (None when not given); a usage error naming ``option`` otherwise."""
    if text is None:
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        raise click.BadParameter("not valid JSON", param_hint=option) from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object", param_hint=option)
    return parsed


def _kind_of(client: Client, file: Path) -> str:
    """The kind whose uploads take ``file``'s extension, as the server lists its kinds."""
    kinds = client.kinds()
    matches = kinds_for_suffix(kinds, file.suffix)
    if len(matches) == 1:
        return matches[0].name
    if matches:
        names = ", ".join(kind.name for kind in matches)
        raise click.UsageError(f"{file.name!r} fits several job kinds ({names}): pass --kind")
    uploads = ", ".join(kind.name for kind in kinds if kind.takes_file) or "none"
    raise click.UsageError(
        f"cannot tell the job kind of {file.name!r} from its extension: pass --kind "
        f"(the kinds that take a file: {uploads})"
    )


@click.command()
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kind", default=None, help="Job kind (`jobpulse kinds` lists them) [from FILE's extension]")
@click.option("--input", "input_", default=None, help="Input of a kind that takes JSON, as a JSON object")
@click.option("--options", "options", default=None, help="Options as a JSON object")
@click.option("--watch", "watch", is_flag=True, help="Show progress until the job ends; exit by its state")
@_connection
@_errors
def submit(
    file: Path | None,
    kind: str | None,
    input_: str | None,
    options: str | None,
    watch: bool,
    url: str,
    token: str | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Submit a job and print its id: FILE for a kind that takes a file, or --kind (with --input) for
    one that takes JSON. With --watch, follow it to the end."""
    if file is not None and input_ is not None:
        raise click.UsageError("give FILE or --input, not both")
    if file is None and kind is None:
        raise click.UsageError("give FILE to upload, or --kind (with --input for a kind that takes JSON)")
    document = _json_object(input_, "--input")
    parsed_options = _json_object(options, "--options")
    with Client(url, token=_token(token)) as client:
        try:
            if file is not None:
                kind = kind or _kind_of(client, file)
                job = client.submit(file, kind=kind, options=options)
            else:
                assert kind is not None
                job = client.submit_json(kind, document, parsed_options)
        except InvalidOptions as exc:
            if exc.code != "invalid_kind":
                raise
            hint = "`jobpulse kinds` lists what each kind takes: FILE, --input JSON or nothing"
            raise click.UsageError(f"{exc.message} ({hint})") from None
        if as_json:
            _print_json(job.as_dict())
        else:
            click.echo(job.id)
        if watch:
            _watch(client, job.id, resource_of(kind) if file is not None else "jobs", timeout, as_json)


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
        source = record["input"].get("filename") or ""  # none for a JSON job
        console.print(f"[bold]{job_id}[/]  {record['kind']}  {source}", highlight=False)
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


def _takes(kind: KindInfo) -> str:
    """What a kind's jobs take, in a few words."""
    if kind.input_type == "upload":
        return " ".join(kind.suffixes) or "a file"
    if kind.input_type == "json":
        return "JSON (--input)"
    return "no input"


@click.command("kinds")
@_connection
@_errors
def list_kinds(url: str, token: str | None, timeout: float | None, as_json: bool) -> None:
    """List the job kinds the server accepts: name, resource and what each takes."""
    del timeout  # one request: the client's own timeout applies
    with Client(url, token=_token(token)) as client:
        kinds = client.kinds()
    if as_json:
        for kind in kinds:
            _print_json(kind.body)
        return
    rows = [("KIND", "RESOURCE", "INPUT"), *((k.name, k.resource, _takes(k)) for k in kinds)]
    widths = [max(len(row[column]) for row in rows) for column in range(2)]
    for name, resource, takes in rows:
        click.echo(f"{name:<{widths[0]}}  {resource:<{widths[1]}}  {takes}")


def commands() -> list[click.Command]:
    """The client commands, for the ``jobpulse`` group."""
    return [submit, watch, status, delete_job, retry_job, list_kinds]
