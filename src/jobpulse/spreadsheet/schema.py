"""Turn the raw cells of one row into a JSON-ready record, checking them against an optional schema.

:class:`RowValidator` does the per-column work once, in its constructor, so :meth:`RowValidator.validate`
is a tight loop: it runs once per row on files of up to a million rows.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from jobpulse.errors import BadInput
from jobpulse.spreadsheet.options import ColumnSpec, ColumnType

__all__ = ["RowError", "RowValidator", "cell_text", "unique_names"]

_PLAIN: frozenset[type] = frozenset({str, int, float, bool, type(None)})
_SHOWN_CHARS = 40  # how much of a bad value an error message repeats
_MAX_NUMBER_CHARS = 64  # longer "numbers" are rejected unparsed
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_DIGITS = 30  # so that "1e999999999" is not turned into a billion-digit int
_INF = float("inf")
_GROUPED_NUMBER = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")
_DATE_FORMATS = (
    (re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"), (1, 2, 3)),
    (re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})"), (1, 2, 3)),
    (re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})"), (3, 2, 1)),
)
# An address is LOCAL@DOMAIN. Neither part can hold an "@", so an address has exactly one and each side
# is checked on its own: domains repeat down a column, so their verdicts (and lowercase forms) are kept.
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_EMAIL_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
_EMAIL_DOMAINS: dict[str, str] = {}  # domain -> its lowercase form, or "" when it is not a domain
_CACHE_MAX = 4096  # entries in each of these caches; a full one starts again
_REQUIRED = "This column is required, but the cell is empty."
_DATE_TEXTS: dict[dt.date, str] = {}  # ISO texts of dates seen: isoformat() is the costly part
_TRUE = frozenset({"true", "yes", "y", "1", "t"})
_FALSE = frozenset({"false", "no", "n", "0", "f"})


@dataclass(frozen=True, slots=True)
class RowError:
    """Why one cell (or, with ``column`` None, one row) was rejected; ``row`` is the file's row number."""

    row: int
    column: str | None
    message: str

    def to_dict(self) -> dict[str, object]:
        """The error as JSON-ready data for the job's result."""
        return {"row": self.row, "column": self.column, "message": self.message}


class _CellError(Exception):
    """A value that does not fit its column's type; ``message`` is for the end user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def unique_names(names: Iterable[str]) -> list[str]:
    """Stripped header names made usable as keys: blank -> ``column_N`` (1-based), repeats -> ``name_2``.

    Names are compared ignoring case, as schema columns are matched.
    """
    stripped = [name.strip() or f"column_{index}" for index, name in enumerate(names, 1)]
    original = {name.casefold() for name in stripped}
    seen: set[str] = set()
    result: list[str] = []
    for name in stripped:
        candidate, suffix = name, 2
        while candidate.casefold() in seen or (candidate != name and candidate.casefold() in original):
            candidate = f"{name}_{suffix}"
            suffix += 1
        seen.add(candidate.casefold())
        result.append(candidate)
    return result


class RowValidator:
    """Converts rows to ``{column: value}`` dicts and collects per-cell errors against an optional schema.

    Without a schema every value is passed through, made JSON-friendly (dates become ISO strings). With
    one, the schema's columns are converted to their types and checked; the other columns pass through.
    Integral floats (spreadsheets store every number as a float) stay floats unless the schema says
    ``integer``. The constructor raises :class:`BadInput` when a required column is missing.
    """

    def __init__(
        self, header: list[str], columns: list[ColumnSpec] | None, *, dense_columns: int | None = None
    ) -> None:
        """``dense_columns``: records carry every key of the first ``dense_columns`` columns (the ones the
        header names); a key to the right of them only where the row has a value there (not null), so
        that one row wider than the header does not widen every stored record."""
        keys = unique_names(header)
        index_of: dict[str, int] = {}
        for index, key in enumerate(keys):
            index_of.setdefault(key.casefold(), index)
        specs: list[tuple[int, str, Callable[[object], object], bool]] = []
        missing: list[str] = []
        for spec in columns or ():
            found = index_of.get(spec.name.strip().casefold())
            if found is None:
                if spec.required:
                    missing.append(spec.name)
                continue
            keys[found] = spec.name  # output under the schema's spelling, which the client knows
            specs.append((found, spec.name, _CONVERTERS[spec.type], spec.required))
        if missing:
            raise BadInput(_missing_message(missing, keys))
        self._keys = keys
        self._width = len(keys)
        self._specs = specs
        typed = {index for index, _, _, _ in specs}
        self._untyped = [(index, key) for index, key in enumerate(keys) if index not in typed]
        dense = len(keys) if dense_columns is None else min(max(dense_columns, 0), len(keys))
        self._dense = dense
        self._sparse = [
            (index, key) for index, key in enumerate(keys) if index >= dense and index not in typed
        ]
        if self._sparse:
            self._untyped = [(index, key) for index, key in self._untyped if index < dense]
        self._template = dict.fromkeys(
            keys[:dense]
        )  # the dense keys in column order; validate() fills a copy
        self._template.update((key, None) for index, key, _, _ in specs if index >= dense)

    @property
    def columns_out(self) -> list[str]:
        """Every key a record :meth:`validate` returns can have, in column order (columns right of
        ``dense_columns`` appear in a record only where it has a value)."""
        return list(self._keys)

    def validate(
        self, row_number: int, values: list[object]
    ) -> tuple[dict[str, object] | None, list[RowError]]:
        """Return ``(record, [])`` for a good row, or ``(None, errors)`` with one error per bad cell."""
        if len(values) != self._width:
            values = (values + [None] * self._width)[: self._width]
        if not self._specs and not self._sparse:
            plain = [v if v.__class__ in _PLAIN else _jsonable(v) for v in values]
            return dict(zip(self._keys, plain, strict=True)), []
        record = self._template.copy()  # cheaper than building a dict from pairs; every key is set below
        for index, key in self._untyped:
            value = values[index]
            record[key] = value if value.__class__ in _PLAIN else _jsonable(value)
        for index, key in self._sparse:
            value = values[index]
            if value is not None:
                record[key] = value if value.__class__ in _PLAIN else _jsonable(value)
        errors: list[RowError] = []
        for index, key, convert, required in self._specs:
            value = values[index]
            if value is None or (type(value) is str and (not value or value.isspace())):
                record[key] = None
                if required:
                    errors.append(RowError(row_number, key, _REQUIRED))
                continue
            try:
                record[key] = convert(value)
            except _CellError as exc:
                errors.append(RowError(row_number, key, exc.message))
        if errors:
            return None, errors
        return record, errors


def _missing_message(missing: list[str], found: list[str]) -> str:
    names = " and ".join(", ".join(f"'{name}'" for name in missing).rsplit(", ", 1))
    if len(missing) == 1:
        message = f"The file has no column named {names}, which is required."
    else:
        message = f"The file has no columns named {names}, which are required."
    shown = ", ".join(f"'{name}'" for name in found[:20]) + (", ..." if len(found) > 20 else "")
    return f"{message} Its columns are: {shown}." if found else message


def _jsonable(value: object) -> object:
    """A cell value as something JSON can hold: dates and times become ISO strings."""
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def _shown(value: object) -> str:
    """The bad value, quoted, as the user typed it, cut if long."""
    text = cell_text(value)
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 3] + "..."
    return f"'{text}'"


def cell_text(value: object) -> str:
    """A cell as text, as a user would read it: stripped, '' for empty, integral floats without '.0'."""
    if type(value) is str:
        return value.strip()
    if value is None:
        return ""
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is float and value.is_integer():
        return str(int(value))  # a phone number or ID typed into a number cell
    return str(value if value.__class__ in _PLAIN else _jsonable(value))


def _parse_decimal(text: str) -> Decimal | None:
    """'1,234.5' / '-12' / '1e3' as a finite Decimal, or None."""
    text = text.strip()
    if _GROUPED_NUMBER.fullmatch(text):
        text = text.replace(",", "")
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _to_integer(value: object) -> object:
    if type(value) is float and value.is_integer():  # most cells: spreadsheets store numbers as floats
        number: int | None = int(value)
    else:
        number = _whole(value)
    if number is None:
        raise _CellError(f"{_shown(value)} is not a whole number.")
    if not _INT64_MIN <= number <= _INT64_MAX:  # JSON and the database hold 64-bit integers
        raise _CellError(f"{_shown(value)} is too large for a whole number; store it as text.")
    return number


def _whole(value: object) -> int | None:
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    if type(value) is str and len(value) <= _MAX_NUMBER_CHARS:
        try:
            return int(value)  # the common case; int() allows surrounding spaces and 1_000
        except ValueError:
            number = _parse_decimal(value)
            if (
                number is not None
                and number.adjusted() < _MAX_DIGITS
                and number == number.to_integral_value()
            ):
                return int(number)
    return None


def _to_number(value: object) -> object:
    if type(value) is float and -_INF < value < _INF:
        return value
    if type(value) is int:
        return float(value)
    if type(value) is str and len(value) <= _MAX_NUMBER_CHARS:
        try:
            number = float(value)  # the common case
        except ValueError:
            decimal = _parse_decimal(value)
            number = _INF if decimal is None else float(decimal)
        if -_INF < number < _INF:  # also rules out 'nan', which float() accepts
            return number
    raise _CellError(f"{_shown(value)} is not a number.")


def _to_boolean(value: object) -> object:
    if type(value) is str:
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    elif type(value) is bool:
        return value
    elif (type(value) is float or type(value) is int) and value in (0, 1):
        return value == 1
    raise _CellError(f"{_shown(value)} is not a yes/no value (use true/false, yes/no or 1/0).")


def _to_date(value: object) -> object:
    if type(value) is dt.date:  # a date cell; a column of dates repeats its values, so texts are kept
        text = _DATE_TEXTS.get(value)
        if text is None:
            if len(_DATE_TEXTS) >= _CACHE_MAX:
                _DATE_TEXTS.clear()
            text = _DATE_TEXTS[value] = value.isoformat()
        return text
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if type(value) is str:
        text = value.strip()
        if len(text) == 10 and text[4] == "-" and text[7] == "-":
            try:
                dt.date.fromisoformat(text)  # the common case: YYYY-MM-DD is already the answer
            except ValueError:
                raise _CellError(f"{_shown(value)} is not a valid date.") from None
            return text
        for pattern, (year, month, day) in _DATE_FORMATS:
            match = pattern.fullmatch(text)
            if match:
                try:
                    return dt.date(int(match[year]), int(match[month]), int(match[day])).isoformat()
                except ValueError:
                    raise _CellError(f"{_shown(value)} is not a valid date.") from None
    raise _CellError(f"{_shown(value)} is not a date (use YYYY-MM-DD, YYYY/MM/DD or DD.MM.YYYY).")


def _to_email(value: object) -> object:
    if type(value) is str:
        text = value.strip()
        local, at, domain = text.partition("@")  # a second "@" ends up in domain, which then fails
        # ASCII letters and digits alone (isalnum() by itself would pass "é") need no regex.
        if (
            at
            and len(text) <= 254
            and ((local.isalnum() and local.isascii()) or _EMAIL_LOCAL.fullmatch(local))
        ):
            lowered = _EMAIL_DOMAINS.get(domain)
            if lowered is None:
                lowered = domain.lower() if _EMAIL_DOMAIN.fullmatch(domain) else ""
                if len(_EMAIL_DOMAINS) >= _CACHE_MAX:
                    _EMAIL_DOMAINS.clear()
                _EMAIL_DOMAINS[domain] = lowered
            if lowered:
                return f"{local}@{lowered}"
    raise _CellError(f"{_shown(value)} is not an email address.")


_CONVERTERS: dict[ColumnType, Callable[[object], object]] = {
    "string": cell_text,
    "integer": _to_integer,
    "number": _to_number,
    "boolean": _to_boolean,
    "date": _to_date,
    "email": _to_email,
}
