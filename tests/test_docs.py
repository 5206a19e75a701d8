"""The docs keep up with the code: every setting is listed in docs/operations.md."""

from __future__ import annotations

from pathlib import Path

from jobpulse.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented_with_its_variable() -> None:
    table = (ROOT / "docs" / "operations.md").read_text()
    plain = {"redis_url": "REDIS_URL", "database_url": "DATABASE_URL"}
    missing = [
        name
        for name in Settings.model_fields
        if f"`{plain.get(name, 'JOBPULSE_' + name.upper())}`" not in table
    ]
    assert missing == []
