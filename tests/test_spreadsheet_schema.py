"""RowValidator: JSON-ready records without a schema, typed conversion and per-cell errors with one."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from jobpulse.errors import BadInput
from jobpulse.spreadsheet import ColumnSpec, RowError, RowValidator
from jobpulse.spreadsheet.options import ColumnType
from jobpulse.spreadsheet.schema import cell_text, unique_names


def one_column(kind: ColumnType, value: object, *, required: bool = False) -> tuple[object, list[RowError]]:
    """Validate ``value`` in a one-column row whose column has type ``kind``; the value and the errors."""
    validator = RowValidator(["value"], [ColumnSpec(name="value", type=kind, required=required)])
    record, errors = validator.validate(7, [value])
    return (None if record is None else record["value"]), errors


def converts(kind: ColumnType, value: object) -> object:
    result, errors = one_column(kind, value)
    assert errors == []
    return result


def rejects(kind: ColumnType, value: object) -> str:
    result, errors = one_column(kind, value)
    assert result is None
    [error] = errors
    assert (error.row, error.column) == (7, "value")
    return error.message


# --- no schema -----------------------------------------------------------------------------------------


def test_no_schema_passes_every_column_through_as_json() -> None:
    validator = RowValidator(["name", "n", "when", "at", "t", "ok", "empty"], None)
    values: list[object] = [
        "Kim",
        3.0,
        dt.date(2024, 1, 2),
        dt.datetime(2024, 1, 2, 3, 4, 5),
        dt.time(6, 7),
        True,
        None,
    ]
    record, errors = validator.validate(2, values)
    assert errors == []
    assert record == {
        "name": "Kim",
        "n": 3.0,  # integral floats stay floats without a schema
        "when": "2024-01-02",
        "at": "2024-01-02T03:04:05",
        "t": "06:07:00",
        "ok": True,
        "empty": None,
    }
    assert json.loads(json.dumps(record)) == record
    assert validator.columns_out == ["name", "n", "when", "at", "t", "ok", "empty"]


def test_short_rows_are_padded_and_long_rows_cut() -> None:
    validator = RowValidator(["a", "b", "c"], None)
    assert validator.validate(2, ["x"]) == ({"a": "x", "b": None, "c": None}, [])
    assert validator.validate(3, ["x", "y", "z", "extra"]) == ({"a": "x", "b": "y", "c": "z"}, [])


def test_blank_and_duplicate_header_names() -> None:
    assert RowValidator(["id", " ", "id", "ID", "id_2"], None).columns_out == [
        "id",
        "column_2",
        "id_3",  # id_2 is taken by the last column
        "ID_4",  # names are compared ignoring case
        "id_2",
    ]
    assert unique_names(["a", "", "a", "column_2"]) == ["a", "column_2", "a_2", "column_2_2"]


def test_timedelta_becomes_text() -> None:
    record, _ = RowValidator(["d"], None).validate(2, [dt.timedelta(hours=1, minutes=30)])
    assert record == {"d": "1:30:00"}


# --- schema: the columns -------------------------------------------------------------------------------


def test_schema_matches_headers_ignoring_case_and_spaces_and_keeps_other_columns() -> None:
    validator = RowValidator(
        [" E-Mail ", "Age", "note"],
        [ColumnSpec(name="e-mail", type="email"), ColumnSpec(name="AGE", type="integer")],
    )
    assert validator.columns_out == ["e-mail", "AGE", "note"]
    record, errors = validator.validate(2, ["Kim@Example.COM", 30.0, 1.5])
    assert errors == []
    assert record == {"e-mail": "Kim@example.com", "AGE": 30, "note": 1.5}


def test_missing_required_column() -> None:
    with pytest.raises(BadInput) as caught:
        RowValidator(["name", "mail"], [ColumnSpec(name="email", required=True)])
    assert caught.value.message == (
        "The file has no column named 'email', which is required. Its columns are: 'name', 'mail'."
    )


def test_missing_required_columns() -> None:
    columns = [ColumnSpec(name=name, required=True) for name in ("email", "phone", "city")]
    with pytest.raises(BadInput) as caught:
        RowValidator(["name"], columns)
    assert "no columns named 'email', 'phone' and 'city', which are required" in caught.value.message


def test_missing_optional_column_is_ignored() -> None:
    validator = RowValidator(["name"], [ColumnSpec(name="phone", type="integer")])
    assert validator.columns_out == ["name"]
    assert validator.validate(2, ["Kim"]) == ({"name": "Kim"}, [])


def test_required_cells() -> None:
    assert one_column("string", None, required=True)[1] == [
        RowError(7, "value", "This column is required, but the cell is empty.")
    ]
    assert one_column("integer", "   ", required=True)[1][0].column == "value"
    assert one_column("integer", None) == (None, [])
    assert one_column("email", " ") == (None, [])  # empty optional cells are None, not errors


def test_one_error_per_bad_cell() -> None:
    validator = RowValidator(
        ["id", "email", "ok", "name"],
        [
            ColumnSpec(name="id", type="integer"),
            ColumnSpec(name="email", type="email"),
            ColumnSpec(name="ok", type="boolean"),
            ColumnSpec(name="name", required=True),
        ],
    )
    record, errors = validator.validate(12, ["abc", "nope", "true", None])
    assert record is None
    assert [error.to_dict() for error in errors] == [
        {"row": 12, "column": "id", "message": "'abc' is not a whole number."},
        {"row": 12, "column": "email", "message": "'nope' is not an email address."},
        {"row": 12, "column": "name", "message": "This column is required, but the cell is empty."},
    ]


# --- schema: the types ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" Kim ", "Kim"),
        (1234567.0, "1234567"),
        (1.5, "1.5"),
        (7, "7"),
        (True, "true"),
        (dt.date(2024, 5, 6), "2024-05-06"),
    ],
)
def test_string(value: object, expected: str) -> None:
    assert converts("string", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12, 12),
        (12.0, 12),
        ("12", 12),
        (" -7 ", -7),
        ("1,234", 1234),
        ("1,234,567", 1234567),
        ("12.0", 12),
        ("1e3", 1000),
    ],
)
def test_integer(value: object, expected: int) -> None:
    result = converts("integer", value)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize("value", [12.5, "12.5", "abc", "1,23", True, "1e40", "nan", dt.date(2024, 1, 1)])
def test_integer_rejects(value: object) -> None:
    assert rejects("integer", value).endswith("is not a whole number.")


def test_integer_message_quotes_the_value() -> None:
    assert rejects("integer", "abc") == "'abc' is not a whole number."
    assert rejects("integer", 12.5) == "'12.5' is not a whole number."
    assert rejects("integer", "x" * 100) == f"'{'x' * 37}...' is not a whole number."


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1.5, 1.5), (3, 3.0), ("1,234.5", 1234.5), (" -0.25 ", -0.25), ("1e3", 1000.0), ("7", 7.0)],
)
def test_number(value: object, expected: float) -> None:
    result = converts("number", value)
    assert result == expected
    assert type(result) is float


@pytest.mark.parametrize("value", ["abc", "nan", "inf", "1,2,3", float("nan"), float("inf"), False, "12,5"])
def test_number_rejects(value: object) -> None:
    assert rejects("number", value).endswith("is not a number.")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("TRUE", True),
        (" yes ", True),
        ("Y", True),
        ("1", True),
        (1.0, True),
        ("false", False),
        ("No", False),
        ("n", False),
        ("0", False),
        (0, False),
    ],
)
def test_boolean(value: object, expected: bool) -> None:
    assert converts("boolean", value) is expected


@pytest.mark.parametrize("value", ["maybe", "2", 2.0, "yess"])
def test_boolean_rejects(value: object) -> None:
    assert "is not a yes/no value" in rejects("boolean", value)


@pytest.mark.parametrize(
    "value",
    [
        dt.date(2024, 3, 9),
        dt.datetime(2024, 3, 9, 23, 59),
        "2024-03-09",
        " 2024-03-09 ",
        "2024-3-9",
        "2024/03/09",
        "2024/3/9",
        "09.03.2024",
        "9.3.2024",
        "2024-03-09T10:11:12",
        "2024-03-09 10:11",
    ],
)
def test_date(value: object) -> None:
    assert converts("date", value) == "2024-03-09"


def test_date_rejects() -> None:
    assert rejects("date", "2024-02-30") == "'2024-02-30' is not a valid date."
    assert rejects("date", "31.04.2024") == "'31.04.2024' is not a valid date."
    assert "is not a date" in rejects("date", "yesterday")
    assert "is not a date" in rejects("date", 45000.0)
    assert "is not a date" in rejects("date", "03/09/2024")  # ambiguous: not accepted
    assert "is not a date" in rejects("date", dt.time(10, 0))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("kim@example.com", "kim@example.com"),
        (" Kim.Lee+tag@Mail.Example.CO.KR ", "Kim.Lee+tag@mail.example.co.kr"),
        ("a_b-c@sub-domain.example.org", "a_b-c@sub-domain.example.org"),
    ],
)
def test_email(value: str, expected: str) -> None:
    assert converts("email", value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "kim",
        "kim@",
        "@example.com",
        "kim@example",
        "kim@@example.com",
        "kim @example.com",
        "a..b@x.com",
        12.0,
    ],
)
def test_email_rejects(value: object) -> None:
    assert rejects("email", value).endswith("is not an email address.")


def test_cell_text() -> None:
    assert [cell_text(v) for v in (None, " a ", 2.0, 2.5, False, dt.datetime(2024, 1, 2))] == [
        "",
        "a",
        "2",
        "2.5",
        "false",
        "2024-01-02T00:00:00",
    ]


def test_validated_records_are_json_serialisable() -> None:
    validator = RowValidator(
        ["id", "when", "other"],
        [ColumnSpec(name="id", type="integer"), ColumnSpec(name="when", type="date")],
    )
    record, errors = validator.validate(2, [5.0, dt.datetime(2024, 1, 2, 3, 4), dt.date(2020, 1, 1)])
    assert errors == []
    assert json.dumps(record) == '{"id": 5, "when": "2024-01-02", "other": "2020-01-01"}'


@pytest.mark.parametrize("value", ["1e25", "9" * 40, 1e20, 2**63, -(2**63) - 1])
def test_integers_past_64_bits_are_a_cell_error_not_a_crash(value: object) -> None:
    validator = RowValidator(["n"], [ColumnSpec(name="n", type="integer")])
    record, errors = validator.validate(2, [value])
    assert record is None
    assert errors[0].message.endswith("too large for a whole number; store it as text.")
