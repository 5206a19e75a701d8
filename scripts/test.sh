#!/usr/bin/env bash
# The whole test suite: lint, types, the browser client's tests, then pytest on SQLite and again on a
# throwaway PostgreSQL.
# Tests run against real services (a redis-server process, the databases, Celery workers).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --test
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"; ruff check .; ruff format --check .
echo "== mypy"; mypy
echo "== import-linter"; lint-imports --no-logo
echo "== browser client: tsc --checkJs, node --test"
npm run --silent --prefix clients/js typecheck
npm test --silent --prefix clients/js

echo "== benchmarks, one short iteration each (make bench runs them for real)"
benchdir=$(mktemp -d /tmp/jobpulse-bench-smoke.XXXXXX)
python bench/run.py --smoke --out "$benchdir" >/dev/null
test -s "$benchdir/results.md"
test -s "$benchdir/results.png"
rm -rf "$benchdir"

echo "== pytest (SQLite)"
unset JOBPULSE_TEST_DATABASE_URL
pytest "$@"

echo "== pytest (PostgreSQL)"
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && [ "${CI:-}" != true ]; then
  echo "PostgreSQL is not installed: the suite ran on SQLite only (CI runs both, and fails without it)." >&2
  exit 0
fi
pgdir=$(mktemp -d /tmp/jobpulse-pg.XXXXXX)
trap 'scripts/postgres.sh stop "$pgdir"' EXIT
JOBPULSE_TEST_DATABASE_URL=$(scripts/postgres.sh start "$pgdir")
export JOBPULSE_TEST_DATABASE_URL
pytest "$@"
