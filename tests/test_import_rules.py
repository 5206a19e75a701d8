"""The import rules of ``.importlinter`` hold, and each one fails when a forbidden import is added.

The second test runs ``lint-imports`` on a copy of the package with one forbidden import per contract:
grimp finds the package through ``PYTHONPATH``, so it reads the copy, and only the copy has those lines.
The last one imports the guarded modules in a fresh interpreter, which catches what a static graph does
not see: ``import jobpulse.api.layer`` runs ``jobpulse/__init__.py`` first, and the imports a module makes
on first use (the top-level package's ``Tracker``) are left out of the API's contract.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def contract_names() -> dict[str, str]:
    """Each contract's id (its section's suffix) and the name ``lint-imports`` reports it by."""
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    prefix = "importlinter:contract:"
    return {
        section.removeprefix(prefix): parser[section]["name"]
        for section in parser.sections()
        if section.startswith(prefix)
    }


def lint_imports(cwd: Path, *, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [str(LINT_IMPORTS), str(cwd / ".importlinter"), "--no-cache", "--no-logo"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def report_of(output: str, name: str, names: list[str]) -> str:
    """The part of ``lint-imports``' output that explains why the contract ``name`` is broken."""
    start = output.index(f"\n{name}\n{'-' * len(name)}\n")
    ends = [output.find(f"\n{other}\n", start + 1) for other in names if other != name]
    return output[start : min([end for end in ends if end != -1], default=len(output))]


def add_line(path: Path, line: str) -> int:
    """Append ``line`` to the module at ``path``; its line number."""
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, line, ""]))
    return len(lines) + 1


def test_the_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(contract_names())} kept, 0 broken." in result.stdout


def test_each_contract_fails_on_a_forbidden_import(tmp_path: Path) -> None:
    package = tmp_path / "jobpulse"
    shutil.copytree(ROOT / "src" / "jobpulse", package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(CONFIG, tmp_path / ".importlinter")
    # The read path, directly and through another module (how api/errors.py reached the database once).
    layer = add_line(package / "api" / "layer.py", "import sqlalchemy")
    metrics = add_line(
        package / "api" / "metrics.py", "from jobpulse.api.handlers import install_error_handlers"
    )
    states = add_line(package / "states.py", "from jobpulse import worker")
    base = add_line(package / "client" / "base.py", "import jobpulse.db")
    # The top-level package loads the server's settings.
    status = add_line(package / "client" / "status.py", "from jobpulse import __version__")
    limits = add_line(package / "api" / "limits.py", "import jobpulse.worker")
    expected = {
        "read-path": [
            f"jobpulse.api.layer -> sqlalchemy (l.{layer})",
            f"jobpulse.api.metrics -> jobpulse.api.handlers (l.{metrics})",
        ],
        "core": [f"jobpulse.states -> jobpulse.worker (l.{states})"],
        "sdk": [
            f"jobpulse.client.base -> jobpulse.db (l.{base})",
            f"jobpulse.client.status -> jobpulse (l.{status})",
        ],
        "api-worker": [f"jobpulse.api.limits -> jobpulse.worker (l.{limits})"],
    }
    names = contract_names()
    assert set(expected) == set(names)

    result = lint_imports(tmp_path, pythonpath=tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"Contracts: 0 kept, {len(names)} broken." in result.stdout
    for contract, chains in expected.items():
        report = report_of(result.stdout, names[contract], list(names.values()))
        for chain in chains:
            assert chain in report, f"{contract}: {chain!r} not in\n{report}"


def loaded_by(modules: tuple[str, ...]) -> set[str]:
    """The modules a fresh interpreter holds after importing ``modules``."""
    code = (
        f"import importlib, sys\nfor name in {modules!r}: importlib.import_module(name)\nprint(*sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return set(result.stdout.split())


@pytest.mark.parametrize(
    ("modules", "forbidden"),
    [
        (
            ("jobpulse.api.layer", "jobpulse.progress.store", "jobpulse.progress.record"),
            ("jobpulse.db", "jobpulse.worker", "sqlalchemy", "celery"),
        ),
        (
            ("jobpulse.client", "jobpulse.client.cli"),
            (
                "jobpulse.api",
                "jobpulse.db",
                "jobpulse.tracker",
                "jobpulse.worker",
                "celery",
                "fastapi",
                "sqlalchemy",
            ),
        ),
        (("jobpulse.api.app",), ("jobpulse.tracker", "jobpulse.worker")),
    ],
    ids=["read-path", "sdk", "api-worker"],
)
def test_importing_loads_no_forbidden_module(modules: tuple[str, ...], forbidden: tuple[str, ...]) -> None:
    loaded = loaded_by(modules)  # a submodule's package is loaded with it
    assert [name for name in forbidden if name in loaded] == []
