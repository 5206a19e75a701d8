"""The Python SDK: :class:`Client` and :class:`AsyncClient` over one base, and the polling policy.

Imports httpx and jobpulse's light modules (states, errors), not the server's stack (FastAPI, Celery,
SQLAlchemy, redis): an application that only talks to jobpulse does not pay for them.
"""

from jobpulse.client.base import Resource, resource_of
from jobpulse.client.client import AsyncClient, Client
from jobpulse.client.kinds import KindInfo
from jobpulse.client.polling import Poller, Polling
from jobpulse.client.status import Progress

__all__ = [
    "AsyncClient",
    "Client",
    "KindInfo",
    "Poller",
    "Polling",
    "Progress",
    "Resource",
    "resource_of",
]
