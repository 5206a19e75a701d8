"""Writes batches in a background thread, so the database works on one batch while Python validates the
next: on a 2-core machine the import's database time then overlaps its parsing instead of adding to it."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

__all__ = ["BatchWriter"]

T = TypeVar("T")
_DONE = object()


class BatchWriter(Generic[T]):
    """``write(batch)`` hands a batch to one writer thread (at most ``depth`` waiting); ``close()`` waits
    for all of them and re-raises the first error. Use it as a context manager."""

    def __init__(self, write: Callable[[T], int], depth: int = 2) -> None:
        self._write = write
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="batch-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not _DONE:
            if self._error is None:
                try:
                    self.written += self._write(batch)  # type: ignore[arg-type]
                except BaseException as exc:  # handed to the caller's thread in close()
                    self._error = exc

    def write(self, batch: T) -> None:
        """Queue ``batch``; blocks while ``depth`` batches are waiting. Raises an earlier write's error."""
        if self._error is not None:
            raise self._error
        self._queue.put(batch)

    def close(self) -> int:
        """Wait for every queued batch; the number of rows written, or the first error."""
        self._drain()
        if self._error is not None:
            raise self._error
        return self.written

    def _drain(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()

    def __enter__(self) -> BatchWriter[T]:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:  # the job failed: let the writer drain, but the job's own error is the one to report
            self._drain()
