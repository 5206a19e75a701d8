"""Files and secrets: the data dir and what jobpulse writes there are private to its user, and the
signing secret is long enough and created private in one step."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobpulse.errors import ConfigurationError
from jobpulse.settings import MIN_SECRET_BYTES, Settings, private_dir
from tests.conftest import SECRET
from tests.services import ApiServer, RedisServer


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_dir_creates_and_tightens(tmp_path: Path) -> None:
    fresh = private_dir(tmp_path / "a" / "b")
    assert _mode(fresh) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    private_dir(loose)
    assert _mode(loose) == 0o700


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="too short"):
        Settings(secret_key="x" * (MIN_SECRET_BYTES - 1)).require_secret_key()
    assert Settings(secret_key="x" * MIN_SECRET_BYTES).require_secret_key() == "x" * MIN_SECRET_BYTES


def test_a_short_generated_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text("short")
    with pytest.raises(ConfigurationError, match="too short"):
        Settings(data_dir=tmp_path).require_secret_key()


def test_the_generated_secret_is_private_even_under_a_permissive_umask(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    previous = os.umask(0)
    try:
        key = Settings(data_dir=data_dir).ensure_secret_key()
    finally:
        os.umask(previous)
    assert len(key) >= MIN_SECRET_BYTES
    assert _mode(data_dir / "secret_key") == 0o600
    assert _mode(data_dir) == 0o700
    assert Settings(data_dir=data_dir).ensure_secret_key() == key  # generated once, then read


@pytest.fixture
def private_server(tmp_path: Path, database_url: str) -> Iterator[tuple[ApiServer, Path]]:
    """`jobpulse serve` as shipped, on a data dir that starts world-readable, and no worker."""
    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start()
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPULSE_") and k not in ("REDIS_URL",)}
    env.update(
        REDIS_URL=redis_server.url,
        DATABASE_URL=database_url,
        JOBPULSE_SECRET_KEY=SECRET,
        JOBPULSE_DATA_DIR=str(data_dir),
        PYTHONUNBUFFERED="1",
    )
    server = ApiServer(env, tmp_path / "api.log")
    server.start()
    yield server, data_dir
    server.stop()
    redis_server.stop()


@pytest.mark.integration
def test_serve_keeps_the_data_dir_and_uploads_private(
    private_server: tuple[ApiServer, Path], auth: dict[str, str]
) -> None:
    server, data_dir = private_server
    assert _mode(data_dir) == 0o700
    answer = httpx.post(
        f"{server.url}/jobs/",
        headers=auth,
        data={"kind": "spreadsheet_import"},
        files={"file": ("people.csv", b"name,age\nAda,36\n", "text/csv")},
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    folder = data_dir / "uploads" / answer.json()["id"]
    (upload,) = folder.iterdir()
    assert _mode(upload) & 0o077 == 0, oct(_mode(upload))
    assert _mode(folder) & 0o077 == 0, oct(_mode(folder))
    assert _mode(data_dir / "uploads") & 0o077 == 0
