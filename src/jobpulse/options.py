"""Options a client sends as JSON with a submission, validated before the job is queued.

Validation is strict (no "3" for 3) so that a typo is reported at submission time rather than guessed at;
:func:`parse_json_options` turns pydantic's errors into one readable :class:`~jobpulse.errors.InvalidOptions`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from jobpulse.errors import InvalidOptions

__all__ = ["parse_json_options"]

M = TypeVar("M", bound=BaseModel)

_MAX_REPORTED_ERRORS = 5


def parse_json_options(model: type[M], raw: str | None, what: str, noun: str = "options") -> M:
    """Parse ``raw`` JSON into ``model``; None or blank text gives the defaults.

    Raises :class:`InvalidOptions` ("Invalid {what} {noun}: ...") naming each bad field, for bad JSON as
    for bad values.
    """
    if raw is None or not raw.strip():
        return model()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        problems = [_describe(error, noun) for error in exc.errors(include_url=False)]
        shown = "; ".join(problems[:_MAX_REPORTED_ERRORS])
        if len(problems) > _MAX_REPORTED_ERRORS:
            shown += f"; and {len(problems) - _MAX_REPORTED_ERRORS} more"
        raise InvalidOptions(f"Invalid {what} {noun}: {shown}.") from None


def _describe(error: Any, noun: str) -> str:
    """One pydantic error as 'field: what is wrong', without pydantic's own vocabulary."""
    kind: str = error["type"]
    field = _field_path(error["loc"])
    message: str = error["msg"]
    if kind == "json_invalid":
        return f"the {noun} are not valid JSON ({error.get('ctx', {}).get('error', message)})"
    if kind == "model_type" or (kind == "model_attributes_type" and not field):
        return f"the {noun} must be a JSON object"
    if kind == "extra_forbidden":
        return f"'{field}' is not a known option"
    if kind == "missing":
        return f"'{field}' is required"
    message = message.removeprefix("Value error, ").removeprefix("Input should be ")
    if kind.endswith("_type") or kind in ("literal_error", "greater_than_equal", "string_too_short"):
        message = f"should be {message}"
    return f"'{field}' {message}" if field else message


def _field_path(loc: tuple[int | str, ...]) -> str:
    """('columns', 0, 'type') -> 'columns[0].type'."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path
