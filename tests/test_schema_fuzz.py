"""Schemathesis against the app's own ``/openapi.json``, in process (ASGI), with a valid bearer token.

Every operation gets schemathesis's explicit examples, its coverage cases (boundaries, wrong types,
missing and extra parameters) and a bounded number of generated requests: none may answer 500, and
every answer whose status the schema declares must match that declaration's body and content type.
The budget keeps the whole test within a few seconds to a minute on two cores.

Schemathesis's pytest integration (``schema.parametrize``) does not run under this pytest, so its test
builder is driven here directly: one Hypothesis test per operation, all run, failures reported together.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import load_all_checks, not_a_server_error
from schemathesis.core.result import Err
from schemathesis.pytest.lazy import get_all_tests
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from jobpulse.api.app import create_app
from jobpulse.settings import Settings
from tests.services import RedisServer

pytestmark = pytest.mark.integration

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
BUDGET = settings(
    max_examples=50,  # generated requests per operation, besides the examples and coverage cases
    deadline=None,
    database=None,  # nothing written to .hypothesis/
    derandomize=True,  # the same requests every run: CI is reproducible (longer runs by hand explore)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


def test_no_server_error_and_answers_match_the_schema(
    settings: Settings, own_redis: RedisServer, token: str
) -> None:
    # A Redis no worker watches (fuzzed uploads stay PENDING), and no submission rate, so that generated
    # uploads reach the form checks rather than a 429.
    app = create_app(settings.model_copy(update={"redis_url": own_redis.url, "submit_rate_per_minute": 0}))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {"Authorization": f"Bearer {token}"}
    load_all_checks()
    sent: dict[str, int] = {}

    def check(case: Case[Any]) -> None:
        sent[case.operation.label] = sent.get(case.operation.label, 0) + 1
        case.call_and_validate(headers=headers, checks=CHECKS)

    failures: list[str] = []
    for result in get_all_tests(schema=schema, test_func=check, settings=BUDGET, given_kwargs={}):
        if isinstance(result, Err):  # a part of the schema schemathesis cannot read
            failures.append(f"{result.err().label}: the schema is invalid: {result.err()}")
            continue
        operation, test = result.ok()
        try:
            test()
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis's FailureGroup is the latter
            failures.append(f"{operation.label}: {_summary(exc)}")
    assert len(sent) >= 15 and min(sent.values()) >= 5, sent  # every operation was exercised
    assert not failures, "\n\n".join(failures)


def _summary(exc: Any) -> str:
    """What a failure broke and the request that broke it (schemathesis's report, without tracebacks)."""
    return str(exc)[:3000]
