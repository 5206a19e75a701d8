"""parse_options / ImportOptions: defaults, valid options, and readable errors for invalid ones."""

from __future__ import annotations

import pydantic
import pytest

from jobpulse.errors import InvalidOptions
from jobpulse.spreadsheet import ColumnSpec, ImportOptions, parse_options


@pytest.mark.parametrize("raw", [None, "", "  \n", "{}"])
def test_defaults(raw: str | None) -> None:
    assert parse_options(raw) == ImportOptions()
    options = parse_options(raw)
    assert (options.sheet, options.header_row, options.columns, options.delimiter, options.encoding) == (
        None,
        1,
        None,
        None,
        None,
    )


def test_every_option() -> None:
    options = parse_options(
        '{"sheet": "Data", "header_row": 3, "delimiter": ";", "encoding": "EUC-KR", "columns": ['
        ' {"name": "email", "type": "email", "required": true},'
        ' {"name": "age", "type": "integer"}, {"name": "note"}]}'
    )
    assert options.sheet == "Data"
    assert options.header_row == 3
    assert options.delimiter == ";"
    assert options.encoding == "euc_kr"  # normalised to Python's codec name
    assert options.columns == [
        ColumnSpec(name="email", type="email", required=True),
        ColumnSpec(name="age", type="integer"),
        ColumnSpec(name="note", type="string", required=False),
    ]


def test_stored_options_validate_again() -> None:
    """The API stores model_dump(mode="json"); the worker validates that dict again."""
    options = parse_options(
        '{"sheet": 2, "encoding": "cp949", "columns": [{"name": "n", "type": "integer"}]}'
    )
    stored = options.model_dump(mode="json", exclude_none=True)
    assert ImportOptions.model_validate(stored) == options


def test_sheet_index_and_tab_delimiter() -> None:
    options = parse_options('{"sheet": 0, "delimiter": "\\t"}')
    assert options.sheet == 0
    assert options.delimiter == "\t"


def test_column_names_are_stripped() -> None:
    assert ColumnSpec(name="  email ").name == "email"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{bad", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ("3", "must be a JSON object"),
        ('{"sheets": 1}', "'sheets' is not a known option"),
        ('{"header_row": 0}', "'header_row' should be greater than or equal to 1"),
        ('{"header_row": "3"}', "'header_row' should be a valid integer"),
        ('{"header_row": 2.5}', "'header_row' should be a valid integer"),
        ('{"sheet": true}', "'sheet' must be a sheet name or a 0-based sheet index"),
        ('{"sheet": 1.5}', "'sheet' must be a sheet name or a 0-based sheet index"),
        ('{"sheet": -1}', "'sheet' must be 0 or more"),
        ('{"sheet": " "}', "'sheet' must not be blank"),
        ('{"columns": {"name": "a"}}', "'columns' should be a valid"),
        ('{"columns": [{"type": "string"}]}', "'columns[0].name' is required"),
        ('{"columns": [{"name": " "}]}', "'columns[0].name' must not be blank"),
        ('{"columns": [{"name": "a", "type": "int"}]}', "'columns[0].type' should be 'string', 'integer'"),
        (
            '{"columns": [{"name": "a", "required": "yes"}]}',
            "'columns[0].required' should be a valid boolean",
        ),
        ('{"columns": [{"name": "a", "size": 3}]}', "'columns[0].size' is not a known option"),
        ('{"columns": [{"name": "a"}, {"name": "A "}]}', "the column 'A' is listed more than once"),
        ('{"delimiter": ";;"}', "'delimiter' must be a single character"),
        ('{"delimiter": "\\""}', "'delimiter' must be a single character"),
        ('{"encoding": "klingon"}', "'encoding' must be a text encoding"),
        ('{"encoding": "base64"}', "'encoding' must be a text encoding"),
    ],
)
def test_invalid_options(raw: str, expected: str) -> None:
    with pytest.raises(InvalidOptions) as caught:
        parse_options(raw)
    message = caught.value.message
    assert message.startswith("Invalid import options: ")
    assert expected in message
    for jargon in ("pydantic", "Value error", "http", "Input should", "type="):
        assert jargon not in message


def test_several_errors_are_listed_then_counted() -> None:
    raw = '{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7}'
    with pytest.raises(InvalidOptions) as caught:
        parse_options(raw)
    assert caught.value.message.count("is not a known option") == 5
    assert caught.value.message.endswith("; and 2 more.")


def test_options_are_frozen_and_closed() -> None:
    options = ImportOptions()
    with pytest.raises(pydantic.ValidationError):
        options.header_row = 2  # type: ignore[misc, unused-ignore]
    with pytest.raises(pydantic.ValidationError):
        ImportOptions.model_validate({"unknown": 1})
