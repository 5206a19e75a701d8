"""The shape every reader hands back: a :class:`Sheet` (header, row count, rows), the limits it was opened
under, and the reasons for rejecting a file that every format shares."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import python_calamine
from celery.exceptions import SoftTimeLimitExceeded

from jobpulse.errors import BadInput
from jobpulse.spreadsheet.schema import unique_names

__all__ = [
    "CORRUPT",
    "ENCRYPTED",
    "NOT_A_SPREADSHEET",
    "UNKNOWN_ENCODING",
    "Row",
    "Sheet",
    "SpreadsheetLimits",
    "header_names",
    "misnamed",
    "reading_user_file",
]

Row = tuple[int, list[object]]

NOT_A_SPREADSHEET = (
    "The file is not a spreadsheet jobpulse can read (expected .xlsx, .xlsm, .xls, .ods or .csv)."
)
CORRUPT = (
    "The file is corrupt or truncated, so it could not be read. "
    "Open it in your spreadsheet program, save it again and upload the new copy."
)
ENCRYPTED = "The file is password-protected. Save a copy without the password and upload that instead."
UNKNOWN_ENCODING = (
    "The file's text encoding could not be recognised. Save it as 'CSV UTF-8' and upload it again."
)


@dataclass(frozen=True, slots=True)
class SpreadsheetLimits:
    """Bounds on what one upload may cost: its unpacked size (ZIP formats), its number of data rows, its
    width and its area (rows x columns), the last two checked before a sheet is loaded."""

    max_uncompressed_bytes: int
    max_rows: int
    max_columns: int = 1000
    max_cells: int = 20_000_000


@dataclass(frozen=True, slots=True)
class Sheet:
    """One opened sheet: its header, its data-row count and its rows.

    ``total_rows`` is known before iterating (for a progress bar). For CSV it is exact; for spreadsheet
    formats it counts every row between the header and the last non-empty row, blank ones included, so it
    can be a little more than the number of rows :meth:`rows` yields.
    """

    header: list[str]
    total_rows: int
    format: str
    sheet_name: str | None
    _rows: Callable[[], Iterator[Row]] = field(repr=False, compare=False)
    named_columns: int | None = None
    """How many columns the header names (up to its last non-empty cell); None: all of them. Columns to
    the right of these exist only because some row is wider than the header; a record carries them only
    where that row has a value (:class:`~jobpulse.spreadsheet.schema.RowValidator`'s ``dense_columns``)."""

    def rows(self) -> Iterator[Row]:
        """Yield ``(row_number, values)`` for each non-blank data row, in file order.

        ``row_number`` is the 1-based row number in the file, as the user's spreadsheet program shows it
        (for CSV, the record number). Empty cells are None; ``values`` has at most ``len(header)`` items
        (trailing empty cells may be missing). A row is blank, and skipped, when all its cells are empty.
        Each call starts again from the first data row.
        """
        return self._rows()


@contextmanager
def reading_user_file() -> Iterator[None]:
    """Turn any failure of a library on the user's bytes into BadInput; wrap library calls only.

    Celery's soft time limit is raised asynchronously, so it can surface inside a library call: it is
    re-raised (the job ends FAILED with the time-limit reason, not as a corrupt file).
    """
    try:
        yield
    except (BadInput, SoftTimeLimitExceeded):
        raise
    except python_calamine.PasswordError as exc:
        raise BadInput(ENCRYPTED) from exc
    except MemoryError:
        raise
    except BaseException as exc:
        # pyo3 turns a panic in calamine into PanicException, which derives from BaseException.
        if isinstance(exc, Exception) or type(exc).__name__ == "PanicException":
            raise BadInput(CORRUPT) from exc
        raise


def header_names(texts: list[str], header_row: int) -> list[str]:
    if not any(texts):
        raise BadInput(
            f"Row {header_row}, which should hold the column names, is empty. Check the header row setting."
        )
    return unique_names(texts)


# What each file name promises, and how each kind of content is described and named.
_FAMILY_OF_SUFFIX = {
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",  # with or without macros: the same package, read the same way
    ".xls": "xls",
    ".ods": "ods",
    ".csv": "text",
    ".tsv": "text",
    ".txt": "text",
}
_CONTENT = {
    "xlsx": ("an Excel workbook (.xlsx)", ".xlsx"),
    "xls": ("an Excel 97-2003 workbook (.xls)", ".xls"),
    "ods": ("an OpenDocument spreadsheet (.ods)", ".ods"),
    "text": ("CSV text", ".csv"),
}


def misnamed(filename: str, family: str) -> BadInput | None:
    """The rejection for a file whose name claims a spreadsheet format other than its content's
    ``family`` ('xlsx', 'xls', 'ods' or 'text'); None when they agree or the name claims no format."""
    dot = filename.rfind(".")
    suffix = filename[dot:].lower() if dot >= 0 else ""
    claimed = _FAMILY_OF_SUFFIX.get(suffix)
    if claimed is None or claimed == family:
        return None
    what, right = _CONTENT[family]
    return BadInput(
        f"The file is named {suffix} but contains {what}; rename it to {right} or save it as a real "
        f"{suffix} file, and upload it again."
    )
