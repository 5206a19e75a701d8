"""The job kinds a deployment accepts, as ``GET /kinds/`` describes them: typed for the SDK and the CLI."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["InputType", "KindInfo", "kinds_for_suffix"]

InputType = Literal["upload", "json"]


def _object(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


@dataclass(frozen=True, slots=True)
class KindInfo:
    """One job kind of the deployment: what it is called, where its jobs live and what it takes.

    ``input_type`` is ``"upload"`` (a file with one of ``suffixes``, at most ``max_bytes``), ``"json"``
    (a document that ``input_schema`` describes) or None (no input, or one this client does not know:
    ``body`` holds the item as the server sent it).
    """

    name: str
    resource: str
    description: str = ""
    input_type: InputType | None = None
    suffixes: tuple[str, ...] = ()
    max_bytes: int | None = None
    input_schema: dict[str, Any] | None = field(default=None, hash=False)
    options_schema: dict[str, Any] | None = field(default=None, hash=False)
    result: str | None = None
    body: dict[str, Any] = field(default_factory=dict, hash=False, compare=False, repr=False)

    @classmethod
    def from_body(cls, item: dict[str, Any]) -> KindInfo:
        """From one item of ``GET /kinds/``; keys this client does not know are kept in ``body`` only."""
        given = _object(item.get("input")) or {}
        input_type = given.get("type")
        upload = input_type == "upload"
        max_bytes = given.get("max_bytes")
        return cls(
            name=str(item["name"]),
            resource=str(item.get("resource") or "jobs"),
            description=str(item.get("description") or ""),
            input_type=input_type if input_type in ("upload", "json") else None,
            suffixes=tuple(str(s).lower() for s in given.get("suffixes") or ()) if upload else (),
            max_bytes=max_bytes if upload and isinstance(max_bytes, int) else None,
            input_schema=_object(given.get("schema")) if input_type == "json" else None,
            options_schema=_object(item.get("options")),
            result=str(item["result"]) if item.get("result") else None,
            body=dict(item),
        )

    @property
    def takes_file(self) -> bool:
        """Whether its jobs are submitted as a file upload (:meth:`Client.submit`)."""
        return self.input_type == "upload"


def kinds_for_suffix(kinds: Iterable[KindInfo], suffix: str) -> list[KindInfo]:
    """The upload kinds that accept a file name ending in ``suffix`` (".csv"; any case)."""
    wanted = suffix.lower()
    return [kind for kind in kinds if kind.takes_file and wanted in kind.suffixes]
