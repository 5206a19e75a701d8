"""The package's public names stay deliberate (as httpx guards its own)."""

from __future__ import annotations

import types

import jobpulse


def test_all_names_exist_and_nothing_else_is_public() -> None:
    for name in jobpulse.__all__:
        assert hasattr(jobpulse, name), name
    public = {
        name
        for name, value in vars(jobpulse).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(jobpulse.__all__) - {"__version__"}


def test_every_exception_derives_from_the_root() -> None:
    for name in jobpulse.__all__:
        value = getattr(jobpulse, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, jobpulse.JobpulseError), name
