# The two entry points: `make run` (jobpulse on embedded defaults) and `make test` (the whole suite);
# `make bench` runs the benchmarks and writes bench/results/.
.PHONY: run test lint bench clean

run:
	scripts/bootstrap.sh
	.venv/bin/jobpulse up

test:
	scripts/test.sh

bench:
	scripts/bootstrap.sh --test
	.venv/bin/python bench/run.py

lint:
	scripts/bootstrap.sh
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

clean:
	rm -rf .venv .jobpulse .pytest_cache .mypy_cache .ruff_cache
