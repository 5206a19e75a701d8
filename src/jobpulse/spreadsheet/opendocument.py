"""The used area of an OpenDocument spreadsheet's tables, measured from content.xml before python-calamine
loads them (:mod:`jobpulse.spreadsheet.dimensions` explains why, and holds the checks).

calamine reads every table when the file is opened, expanding ``number-columns-repeated`` cells as it
reads and ``number-rows-repeated`` rows between the first and the last non-empty row; an empty run at the
end of a row or below the last row costs nothing. A cell counts as non-empty when it has a value
attribute, a formula or any child element. A 3.4 KB file can declare millions of repeats.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable

from jobpulse.errors import BadInput
from jobpulse.spreadsheet.dimensions import UsedArea, XmlHandlers, local_name, parse_xml, xml_attribute
from jobpulse.spreadsheet.sheet import CORRUPT

__all__ = ["measure_ods"]

_ODS_MAX_ROWS = 1_048_576  # calamine's caps on ods repeats
_ODS_MAX_COLUMNS = 16_384
_ODS_VALUES = frozenset(
    {"value", "string-value", "date-value", "time-value", "boolean-value", "value-type", "formula"}
)


class _TableScan(XmlHandlers):
    """calamine's ods read_table/read_row/get_range, for every table, keeping only sizes."""

    def __init__(self, found: Callable[[UsedArea], None]) -> None:
        self.found = found
        self.tables: list[_Table] = []
        self.cell_depth = 0  # > 0 inside a cell
        self.cell_repeats = 1
        self.cell_filled = False
        self.in_row = False

    def start(self, name: str, attributes: dict[str, str]) -> None:
        local = local_name(name)
        if self.cell_depth:
            self.cell_depth += 1
            self.cell_filled = True
            return
        if local == "table":
            self.tables.append(_Table(xml_attribute(attributes, "name") or "?"))
        elif not self.tables:
            return
        elif local == "table-row":
            self.tables[-1].start_row(_count(xml_attribute(attributes, "number-rows-repeated")))
            self.in_row = True
        elif local in ("table-cell", "covered-table-cell") and self.in_row:
            self.cell_depth = 1
            self.cell_repeats = _count(xml_attribute(attributes, "number-columns-repeated"))
            self.cell_filled = any(local_name(key) in _ODS_VALUES for key in attributes)

    def end(self, name: str) -> None:
        if self.cell_depth:
            self.cell_depth -= 1
            if self.cell_depth == 0:
                self.tables[-1].add_cells(self.cell_repeats, self.cell_filled)
            return
        local = local_name(name)
        if local == "table-row" and self.in_row:
            self.tables[-1].end_row()
            self.in_row = False
        elif local == "table" and self.tables:
            self.found(self.tables.pop().area())


def _count(text: str | None) -> int:
    if text is None:
        return 1
    try:
        return int(text.strip())
    except ValueError:
        raise BadInput(CORRUPT) from None


class _Table:
    def __init__(self, name: str) -> None:
        self.name = name
        self.total_rows = 0  # rows so far, repeats included, capped as calamine caps them
        self.last_row = 0  # rows up to and including the last non-empty one
        self.min_column: int | None = None
        self.max_column = -1
        self.entries = 0  # cells calamine stores before expanding the rows

    def start_row(self, repeats: int) -> None:
        self.repeats = min(repeats, max(0, _ODS_MAX_ROWS - self.total_rows))
        self.total_rows += self.repeats
        self.width = self.pending = 0
        self.first: int | None = None
        self.last = -1

    def add_cells(self, repeats: int, filled: bool) -> None:
        # calamine pushes the previous empty run when the next cell starts, then this cell's run.
        self.width += min(self.pending, _ODS_MAX_COLUMNS - self.width)
        count = min(repeats, _ODS_MAX_COLUMNS - self.width)
        if not filled:
            self.pending = count
            return
        self.pending = 0
        if count > 0:
            if self.first is None:
                self.first = self.width
            self.width += count
            self.last = self.width - 1

    def end_row(self) -> None:
        self.entries += self.width
        if self.first is not None:
            self.last_row = self.total_rows
            self.max_column = max(self.max_column, self.last)
            if self.min_column is None or self.first < self.min_column:
                self.min_column = self.first

    def area(self) -> UsedArea:
        if self.min_column is None:
            return UsedArea(self.name, entries=self.entries)
        return UsedArea(self.name, self.last_row, self.max_column - self.min_column + 1, self.entries)


def measure_ods(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo]) -> list[UsedArea]:
    """The used area of every table in an ods package's content.xml (every copy of it, should the
    archive name it twice)."""
    areas: list[UsedArea] = []
    for member in members:
        if member.filename == "content.xml":
            with archive.open(member) as stream:
                parse_xml(stream, _TableScan(areas.append))
    return areas
