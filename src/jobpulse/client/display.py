"""How the CLI shows a job: a rich progress bar coloured by state, and one summary line at the end."""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, ProgressColumn, TaskID, TextColumn
from rich.progress import Progress as Bar
from rich.progress import Task as BarTask
from rich.text import Text

from jobpulse.client.status import Progress
from jobpulse.states import State

__all__ = ["STYLES", "JobDisplay", "summary"]

STYLES: dict[State, str] = {
    State.PENDING: "yellow",
    State.RUNNING: "cyan",
    State.PROCESSING: "cyan",
    State.FALLBACK_TO_GPU: "magenta",  # a passing state: the job goes on, on a GPU worker
    State.SUCCESS: "green",
    State.READY: "green",
    State.REVIEW_REQUIRED: "yellow",
    State.REJECTED_BAD_INPUT: "red",
    State.FAILED: "bold red",
    State.CANCELLED: "dim",
    State.UNKNOWN: "dim",
}


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class _EtaColumn(ProgressColumn):
    """The server's estimate (``eta_seconds``), not rich's own: the server sees the job's real pace."""

    def render(self, task: BarTask) -> Text:
        eta = task.fields.get("eta")
        return Text(f"ETA {_duration(eta)}" if eta is not None else "", style="progress.remaining")


def _details(details: dict[str, Any], width: int = 60) -> str:
    """``key: value, ...`` on one line, cut to ``width`` characters."""
    line = ", ".join(
        f"{key}: {value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}"
        for key, value in details.items()
    )
    return line if len(line) <= width else line[: width - 1] + "…"


def summary(record: Progress) -> Text:
    """One line for a record: state, percent, message, details, and the reason of a job that did not
    succeed."""
    text = Text(f"{record.state.value:<18}", style=STYLES[record.state])
    if record.percent is not None:
        text.append(f" {record.percent:5.1f}%")
    for part in (record.stage, record.message):
        if part:
            text.append(f"  {part}")
    if record.details:
        text.append(f"  ({_details(record.details)})", style="dim")
    if record.error_reason:
        text.append(f"\n{record.error_reason}", style=STYLES[record.state])
    return text


class JobDisplay:
    """A live bar on ``console`` while a job is watched (a plain line per change when not a terminal)."""

    def __init__(self, console: Console, job_id: str) -> None:
        self.console = console
        self.job_id = job_id
        self._column = BarColumn(bar_width=32)
        self._bar = Bar(
            TextColumn("{task.fields[state]}"),
            self._column,
            TextColumn("{task.fields[percent]}"),
            _EtaColumn(),
            # Server text is shown as is: "[3]" in a message is not rich markup.
            TextColumn("{task.fields[stage]}", style="bold", markup=False),
            TextColumn("{task.fields[message]}", style="dim", markup=False),
            console=console,
            transient=True,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> JobDisplay:
        if self.console.is_terminal:
            self._bar.start()
            self._task = self._bar.add_task(self.job_id, total=None, **self._fields(None))
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._bar.stop()

    def show(self, record: Progress) -> None:
        """Show a new record: move the bar, or print a line when the console is not a terminal."""
        if self._task is None:
            self.console.print(summary(record), highlight=False)
            return
        known = record.percent is not None
        self._column.complete_style = self._column.finished_style = STYLES[record.state]
        self._bar.update(
            self._task, total=100 if known else None, completed=record.percent or 0, **self._fields(record)
        )

    @staticmethod
    def _fields(record: Progress | None) -> dict[str, Any]:
        if record is None:
            return {"state": "[dim]waiting[/]", "percent": "", "eta": None, "stage": "", "message": ""}
        style = STYLES[record.state]
        return {
            "state": f"[{style}]{record.state.value}[/]",
            "percent": f"{record.percent:5.1f}%" if record.percent is not None else "",
            "eta": record.eta_seconds,
            "stage": record.stage or "",
            "message": record.message or "",
        }
