"""Reading and validating uploaded spreadsheets (xlsx, xlsm, xls, ods, csv): pure logic, no services.

:func:`parse_options` validates what the client sent; :func:`open_sheet` opens the file, rejecting bad input
with :class:`~jobpulse.errors.BadInput`; :class:`RowValidator` turns each row into a JSON-ready record.
"""

from __future__ import annotations

from jobpulse.spreadsheet.options import ColumnSpec, ColumnType, ImportOptions, parse_options
from jobpulse.spreadsheet.reader import Row, Sheet, SpreadsheetLimits, open_sheet
from jobpulse.spreadsheet.schema import RowError, RowValidator

__all__ = [
    "ColumnSpec",
    "ColumnType",
    "ImportOptions",
    "Row",
    "RowError",
    "RowValidator",
    "Sheet",
    "SpreadsheetLimits",
    "open_sheet",
    "parse_options",
]
