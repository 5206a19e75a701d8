"""Prometheus metrics, one registry per app: requests by route and status, SQL statements by route.

The SQL count per route is how operators see the zero-SQL rule hold in production. Every label value is
from a closed set, so no client can create series: methods outside the standard ones count as
``other``, paths no route matched as ``unmatched`` (the callers pass route templates, never raw paths).

The progress layer counts here, so this module does not import the database: the SQL counts come from
any :class:`StatementCounts` (in the app, :class:`jobpulse.db.engine.StatementCounter`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

__all__ = ["METHODS", "Metrics", "StatementCounts"]

# The methods counted under their own name (RFC 9110's, and PATCH); any other is "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


class StatementCounts(Protocol):
    """SQL statements counted by the route that ran them."""

    @property
    def by_route(self) -> Mapping[str, int]: ...


class _SqlCollector(Collector):
    def __init__(self, counter: StatementCounts) -> None:
        self._counter = counter

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "jobpulse_sql_statements", "SQL statements executed, by the route that ran them", labels=["route"]
        )
        for route, count in sorted(self._counter.by_route.items()):
            family.add_metric([route], count)
        yield family


class Metrics:
    """The app's registry and the counters the request path increments."""

    def __init__(self, statements: StatementCounts) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "jobpulse_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.registry.register(_SqlCollector(statements))
        self._children: dict[tuple[str, str, int], Counter] = {}

    def count_request(self, method: str, route: str, status: int) -> None:
        """Count one answered request (label children are cached: this runs on every poll)."""
        if method not in METHODS:
            method = "other"
        key = (method, route, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(method, route, str(status))
        child.inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
