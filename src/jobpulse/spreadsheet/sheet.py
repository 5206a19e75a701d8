"""The shape every reader hands back: a :class:`Sheet` (header, row count, rows), the limits it was opened
under, and the reasons for rejecting a file that every format shares."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import python_calamine

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
    """Bounds on what one upload may cost: its unpacked size (ZIP formats) and its number of data rows."""

    max_uncompressed_bytes: int
    max_rows: int


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
    """Turn any failure of a library on the user's bytes into BadInput; wrap library calls only."""
    try:
        yield
    except BadInput:
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
