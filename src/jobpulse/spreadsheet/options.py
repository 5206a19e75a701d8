"""The options a client sends with a spreadsheet import, validated before the job is queued.

Validation is strict (no "3" for 3) so that a typo is reported at submission time rather than guessed at;
:func:`parse_options` turns pydantic's errors into one readable error (:mod:`jobpulse.options`).
"""

from __future__ import annotations

import codecs
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from jobpulse.options import parse_json_options

__all__ = ["ColumnSpec", "ColumnType", "ImportOptions", "parse_options"]

ColumnType = Literal["string", "integer", "number", "boolean", "date", "email"]


class ColumnSpec(BaseModel):
    """One column of an optional schema: which header it matches, its type, and whether it must be there.

    ``name`` is compared with the header cells after stripping whitespace, ignoring case. A ``required``
    column must exist in the header and have a non-empty value in every row.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(min_length=1, max_length=255)
    type: ColumnType = "string"
    required: bool = False

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class ImportOptions(BaseModel):
    """How to read an uploaded spreadsheet: which sheet, where the header is, and an optional schema."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    sheet: str | int | None = None
    """A sheet name, or a 0-based sheet index; None means the first sheet."""
    header_row: int = Field(default=1, ge=1)
    """The 1-based row number of the header row; rows above it are ignored."""
    columns: list[ColumnSpec] | None = None
    delimiter: str | None = None
    """CSV only: the field delimiter; None means sniff it."""
    encoding: str | None = None
    """CSV only: the text encoding; None means detect it."""

    @field_validator("sheet", mode="plain")
    @classmethod
    def _check_sheet(cls, value: object) -> str | int | None:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise ValueError("must be 0 or more (0 is the first sheet)")
            return value
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("must not be blank")
            return value
        raise ValueError("must be a sheet name or a 0-based sheet index")

    @field_validator("delimiter")
    @classmethod
    def _check_delimiter(cls, value: str | None) -> str | None:
        if value is not None and (len(value) != 1 or value in '"\r\n'):
            raise ValueError("must be a single character such as ',', ';', '|' or a tab, and not a quote")
        return value

    @field_validator("encoding")
    @classmethod
    def _check_encoding(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            "".encode(value)  # also rejects codecs that are not text encodings, such as base64
        except LookupError:
            raise ValueError(
                f"must be a text encoding such as 'utf-8' or 'cp949' ('{value}' is not one)"
            ) from None
        return codecs.lookup(value).name

    @model_validator(mode="after")
    def _unique_columns(self) -> ImportOptions:
        seen: set[str] = set()
        for spec in self.columns or ():
            key = spec.name.casefold()
            if key in seen:
                raise ValueError(f"the column '{spec.name}' is listed more than once")
            seen.add(key)
        return self


def parse_options(raw: str | None) -> ImportOptions:
    """Parse the JSON options a client sent; None or blank text gives the defaults.

    Raises :class:`InvalidOptions` naming each bad field, for bad JSON as for bad values.
    """
    return parse_json_options(ImportOptions, raw, "import")
