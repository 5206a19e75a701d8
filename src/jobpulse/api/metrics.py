"""Prometheus metrics, one registry per app: requests by route and status, SQL statements by route.

The SQL count per route is how operators see the zero-SQL rule hold in production. Every label value is
from a closed set, so no client can create series: methods outside the standard ones count as
``other``, paths no route matched as ``unmatched`` (the callers pass route templates, never raw paths).

With ``PROMETHEUS_MULTIPROC_DIR`` set before prometheus-client is first imported (``jobpulse serve
--workers N`` sets it), every server process writes its counts to a file there and a scrape of any
process sums them all (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["METHODS", "Metrics", "multiprocess_mode"]

# The methods counted under their own name (RFC 9110's, and PATCH); any other is "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


def multiprocess_mode() -> bool:
    """Whether this process's counters are shared through files (decided when prometheus-client was
    imported, from ``PROMETHEUS_MULTIPROC_DIR``)."""
    return values.ValueClass is not values.MutexValue


class Metrics:
    """The app's registry and the counters the request path and the database increment."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "jobpulse_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.statements = Counter(
            "jobpulse_sql_statements",
            "SQL statements executed, by the route that ran them",
            ["route"],
            registry=self.registry,
        )
        self.multiprocess = multiprocess_mode()
        # Label children are cached: looking one up hashes and validates its labels on every call.
        self._children: dict[tuple[str, str, int], Counter] = {}
        self._statement_children: dict[str, Counter] = {}

    def count_request(self, method: str, route: str, status: int) -> None:
        """Count one answered request (this runs on every poll)."""
        if method not in METHODS:
            method = "other"
        key = (method, route, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(method, route, str(status))
        child.inc()

    def count_statement(self, route: str) -> None:
        """Count one SQL statement run for ``route`` (a route template, or "-" outside a route)."""
        child = self._statement_children.get(route)
        if child is None:
            child = self._statement_children.setdefault(route, self.statements.labels(route))
        child.inc()

    def render(self) -> bytes:
        """The text exposition format: every server process's counts in multiprocess mode."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
