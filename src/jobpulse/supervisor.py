"""A supervised group of processes (`jobpulse up`): if one dies all stop, and stopping leaves no orphan.

Each child runs in its own process group (so the server's and Celery's own children are signalled too)
and gets SIGTERM if the supervisor itself dies (Linux ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

__all__ = ["ProcessGroup"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ProcessGroup:
    """Children started in order and stopped in reverse order."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(argv, env=dict(env), start_new_session=True, preexec_fn=_die_with_parent)
        self.children.append((name, child))
        return child

    def wait_any(self, poll: float = 0.2) -> tuple[str, int]:
        """Block until a child exits; its name and exit code."""
        while True:
            for name, child in self.children:
                code = child.poll()
                if code is not None:
                    return name, code
            time.sleep(poll)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every child's process group, newest first; SIGKILL what is left after ``timeout``."""
        for _name, child in reversed(self.children):
            self._signal(child, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            self._signal(child, signal.SIGKILL)  # the group: stragglers of a child that did exit
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1)

    @staticmethod
    def _signal(child: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, sig)
