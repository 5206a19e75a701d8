"""Job kinds: each is declared once, as a :class:`Kind`, and everything else reads the declaration.

A kind names its resource (the routes it is served on), its queue, its input (an :class:`Upload`, a
:class:`JsonInput`, or nothing), its options model and its handler. The handler is a dotted name that
only workers import, so the API, which reads the same table, never loads a kind's worker code::

    from jobpulse import JsonInput, Kind

    KIND = Kind(
        name="report_build",
        queue="reports",
        input=JsonInput(ReportRequest),
        handler="myapp.reports:build",
        result="{'url': a download link}",
    )

A :class:`KindRegistry` holds the kinds of a deployment. :meth:`KindRegistry.load` collects them from
the ``jobpulse.kinds`` entry-point group (jobpulse's own three kinds are declared there too, the way a
plugin declares its own) and from the modules the ``kind_modules`` setting lists, for code that is not
packaged. Each entry point (or ``module:attribute``) names a :class:`Kind` or a sequence of them; a bare
module name means its ``KINDS`` attribute.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal

import orjson
from pydantic import BaseModel

from jobpulse.errors import ConfigurationError, InvalidOptions
from jobpulse.options import parse_json_options
from jobpulse.states import State

__all__ = [
    "ENTRY_POINT_GROUP",
    "RESOURCES",
    "JsonInput",
    "Kind",
    "KindRegistry",
    "Resource",
    "Task",
    "Upload",
    "resolve",
]

ENTRY_POINT_GROUP = "jobpulse.kinds"

Resource = Literal["jobs", "videos"]
# Where each resource's routes live; a kind's jobs are served under its resource's prefix.
RESOURCES: Mapping[str, str] = {"jobs": "/jobs", "videos": "/media/videos"}

_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")  # the jobs table's kind column is 32 characters
_QUEUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True, slots=True)
class Upload:
    """The input is one uploaded file (multipart field ``file``).

    ``suffixes`` are the accepted file name extensions (lowercase, with the dot), shown to clients and
    used by the CLI to guess a file's kind; the handler checks the content itself. ``max_bytes`` is a
    size in bytes, or the name of the setting that holds it.
    """

    suffixes: tuple[str, ...] = ()
    max_bytes: int | str = "max_upload_bytes"
    content_types: tuple[str, ...] = ()  # media types, for GET /kinds/ and a browser's file picker

    def limit(self, settings: Any) -> int:
        """The size limit under ``settings``."""
        if isinstance(self.max_bytes, int):
            return self.max_bytes
        value = getattr(settings, self.max_bytes)
        assert isinstance(value, int)
        return value

    def describe(self, settings: Any) -> dict[str, Any]:
        return {
            "type": "upload",
            "suffixes": list(self.suffixes),
            "content_types": list(self.content_types),
            "max_bytes": self.limit(settings),
        }


@dataclass(frozen=True, slots=True)
class JsonInput:
    """The input is a JSON document, validated by ``model`` at submission (422 naming each bad field)."""

    model: type[BaseModel]

    def describe(self, _settings: Any) -> dict[str, Any]:
        return {"type": "json", "schema": self.model.model_json_schema()}


@dataclass(frozen=True, slots=True)
class Task:
    """Another task that runs jobs of a kind (the OCR kind's GPU attempt): its Celery name, queue and
    handler. The kind's own task is ``Kind.task`` on ``Kind.queue`` with ``Kind.handler``."""

    name: str
    queue: str
    handler: str


@dataclass(frozen=True)
class Kind:
    """One job kind, declared once; routes, limits, options, progress routing, workers, the SDK's kind
    list and the OpenAPI schema all read it."""

    name: str  # on the wire and in the jobs table: lowercase letters, digits and _, at most 32
    handler: str | None  # "package.module:attribute" (imported by workers only); None: a host-app task
    queue: str = "jobs"  # the Celery queue its task is sent to
    input: Upload | JsonInput | None = None  # None: the job takes no input
    options: type[BaseModel] | None = None  # validated at submission; None: no options accepted
    resource: Resource = "jobs"
    task: str = ""  # the Celery task name; default "jobpulse.<name>"
    result: str = ""  # the shape of the record's ``result``, in words, for the docs and /kinds/
    description: str = ""
    label: str = ""  # what its users call it, in messages ("Invalid import options: ..."); default: name
    tasks: tuple[Task, ...] = ()  # other tasks that run jobs of this kind
    resume: str | None = None  # "module:function(settings) -> [Requeue]": resends a handed-off job
    requires: tuple[str, ...] = ()  # modules the handler needs; a worker refuses the kind without them
    options_defaults: Mapping[str, str] = field(default_factory=dict)  # option -> setting filling it

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ConfigurationError(
                f"Job kind name {self.name!r}: use lowercase letters, digits and _ (at most 32)"
            )
        if not _QUEUE.fullmatch(self.queue):
            raise ConfigurationError(f"Job kind {self.name!r}: queue name {self.queue!r} is not valid")
        if self.resource not in RESOURCES:
            raise ConfigurationError(f"Job kind {self.name!r}: resource must be 'jobs' or 'videos'")
        if self.handler is not None and ":" not in self.handler:
            raise ConfigurationError(
                f"Job kind {self.name!r}: handler must be 'package.module:attribute', not {self.handler!r}"
            )
        if not self.task:
            object.__setattr__(self, "task", f"jobpulse.{self.name}")

    @property
    def running_state(self) -> State:
        """The state its jobs are in while a worker runs them (PROCESSING for videos, else RUNNING)."""
        return State.PROCESSING if self.resource == "videos" else State.RUNNING

    @property
    def prefix(self) -> str:
        """The route prefix of its jobs (``/jobs`` or ``/media/videos``)."""
        return RESOURCES[self.resource]

    def parse_options(self, raw: str | None, settings: Any) -> dict[str, Any]:
        """The submission's options (JSON text, or None) validated, with defaults from settings filled
        in so that the record shows what was used; 422 for anything the model refuses."""
        if self.options is None:
            if raw is not None and raw.strip() not in ("", "{}", "null"):
                raise InvalidOptions(f"Jobs of kind {self.name!r} take no options.")
            return {}
        parsed = parse_json_options(self.options, raw, self.label or self.name)
        values = parsed.model_dump(mode="json", exclude_none=True)
        for option, setting in self.options_defaults.items():
            if values.get(option) is None:
                values[option] = getattr(settings, setting)
        return values

    def parse_input(self, document: Any) -> dict[str, Any]:
        """A JSON kind's input validated (422 naming each bad field), as stored with the job."""
        assert isinstance(self.input, JsonInput)
        text = orjson.dumps(document).decode()
        parsed = parse_json_options(self.input.model, text, self.label or self.name, "input")
        return parsed.model_dump(mode="json")

    def describe(self, settings: Any) -> dict[str, Any]:
        """The kind as ``GET /kinds/`` lists it."""
        return {
            "name": self.name,
            "resource": self.resource,
            "description": self.description,
            "input": None if self.input is None else self.input.describe(settings),
            "options": None if self.options is None else self.options.model_json_schema(),
            "result": self.result or None,
            "submit": {"method": "POST", "path": f"{self.prefix}/"},
        }


def resolve(dotted: str) -> Any:
    """The object ``package.module:attribute`` names (a bare module name: the module)."""
    module_name, _, attribute = dotted.partition(":")
    module = importlib.import_module(module_name)
    target: Any = module
    for part in filter(None, attribute.split(".")):
        target = getattr(target, part)
    return target


def _kinds_of(source: str, loaded: Any) -> list[Kind]:
    items = [loaded] if isinstance(loaded, Kind) else loaded
    if not isinstance(items, Iterable) or isinstance(items, str | bytes):
        raise ConfigurationError(f"{source} is not a jobpulse Kind or a sequence of them")
    kinds = list(items)
    for item in kinds:
        if not isinstance(item, Kind):
            raise ConfigurationError(f"{source} holds {item!r}, which is not a jobpulse Kind")
    return kinds


class KindRegistry:
    """The job kinds of one deployment, by name."""

    def __init__(self, kinds: Iterable[Kind] = ()) -> None:
        self._kinds: dict[str, Kind] = {}
        for kind in kinds:
            self.register(kind)

    def register(self, kind: Kind) -> Kind:
        """Add ``kind``; a second kind of the same name (or a second videos kind) is refused."""
        if kind.name in self._kinds:
            if self._kinds[kind.name] == kind:
                return kind
            raise ConfigurationError(f"Two job kinds are named {kind.name!r}")
        if kind.resource == "videos" and any(k.resource == "videos" for k in self._kinds.values()):
            raise ConfigurationError("Only one job kind can be served on /media/videos/")
        self._kinds[kind.name] = kind
        return kind

    @classmethod
    def load(cls, modules: Sequence[str] = ()) -> KindRegistry:
        """The kinds of the installed packages (entry points of :data:`ENTRY_POINT_GROUP`) and of
        ``modules`` (``module`` or ``module:attribute``; a bare module means its ``KINDS``)."""
        registry = cls()
        for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
            try:
                loaded = point.load()
            except Exception as exc:
                raise ConfigurationError(
                    f"The job kind entry point {point.name!r} ({point.value}) cannot be loaded: {exc}"
                ) from exc
            for kind in _kinds_of(f"Entry point {point.value}", loaded):
                registry.register(kind)
        for name in modules:
            target = name if ":" in name else f"{name}:KINDS"
            try:
                loaded = resolve(target)
            except (ImportError, AttributeError) as exc:
                raise ConfigurationError(f"JOBPULSE_KIND_MODULES: {name!r} cannot be loaded: {exc}") from exc
            for kind in _kinds_of(target, loaded):
                registry.register(kind)
        return registry

    def __iter__(self) -> Iterator[Kind]:
        return iter(self._kinds.values())

    def __len__(self) -> int:
        return len(self._kinds)

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def get(self, name: str) -> Kind | None:
        """The kind named ``name``, if this deployment has it."""
        return self._kinds.get(name)

    def names(self, resource: Resource | None = None) -> list[str]:
        """The kinds' names (of ``resource`` when given), sorted."""
        return sorted(k.name for k in self._kinds.values() if resource is None or k.resource == resource)

    def queues(self) -> list[str]:
        """Every queue jobpulse's workers run tasks of (what ``jobpulse worker`` listens on by default):
        not the queues of the host application's kinds, whose own workers take those messages."""
        run = [kind for kind in self if kind.handler is not None]
        return sorted({kind.queue for kind in run} | {task.queue for kind in run for task in kind.tasks})

    def routes(self) -> dict[str, str]:
        """Celery task name -> queue, for every task of every kind."""
        routes = {kind.task: kind.queue for kind in self}
        for kind in self:
            routes.update({task.name: task.queue for task in kind.tasks})
        return routes
