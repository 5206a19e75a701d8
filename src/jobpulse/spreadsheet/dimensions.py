"""The real used area of a workbook's sheets, measured from the file before python-calamine loads them.

calamine builds each sheet as one dense grid from the first to the last used row and column, so a 1.6 KB
file with a cell at A1 and one at XFD900000 asks for 472 GB and aborts the process (an abort, not an
exception). The ``<dimension>`` element a sheet declares can lie, so the sheet XML itself is streamed here
(expat, bounded chunks, nothing kept per cell) and the area calamine would build is worked out the way
calamine works it out, rounding up wherever that is unsure:

- xlsx/xlsm: a ``<c>`` counts when it has a child element (calamine drops valueless cells); its position
  is its ``r`` attribute or, without one, calamine's running row and column counters.
- ods: every table, with calamine's repeat rules (:mod:`jobpulse.spreadsheet.opendocument`).
- xls: the compound file and its BIFF records (:mod:`jobpulse.spreadsheet.biff`).

:func:`check_area` turns a measured :class:`UsedArea` into a :class:`BadInput` for the user.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from operator import itemgetter
from pyexpat import ExpatError, ParserCreate
from typing import IO

from jobpulse.errors import BadInput
from jobpulse.spreadsheet.sheet import CORRUPT, SpreadsheetLimits

__all__ = [
    "UsedArea",
    "XmlHandlers",
    "check_area",
    "check_total",
    "check_xlsx_part",
    "local_name",
    "parse_xml",
    "worksheet_parts",
    "xml_attribute",
]

_CHUNK = 1 << 20  # bytes of XML parsed at a time
_CELL_REF = re.compile(r"([A-Za-z]*)([0-9]+)")


@dataclass(frozen=True, slots=True)
class UsedArea:
    """What loading one sheet costs: ``rows`` from row 1 to the last used row, ``columns`` from the first
    to the last used column, and ``entries``, the cells the reader holds before it builds the grid."""

    sheet: str
    rows: int = 0
    columns: int = 0
    entries: int = 0

    @property
    def cells(self) -> int:
        """The grid's size, rows counted from row 1 (calamine's iterator pads the rows above the data)."""
        return self.rows * self.columns


def check_area(area: UsedArea, limits: SpreadsheetLimits, header_row: int | None = None) -> None:
    """Raise BadInput when ``area`` is over the column, cell or (with ``header_row``) data-row limits."""
    name = area.sheet
    if area.columns > limits.max_columns:
        raise BadInput(
            f"The sheet '{name}' has {area.columns:,} columns (counting from its first to its last used "
            f"column), but at most {limits.max_columns:,} can be imported. Delete the unused columns, or "
            "any stray cell far to the right, and upload it again."
        )
    if header_row is not None and area.rows - header_row > limits.max_rows:
        raise BadInput(
            f"The sheet '{name}' has {area.rows - header_row:,} data rows, but at most {limits.max_rows:,} "
            "can be imported at once. Split it into smaller files."
        )
    if max(area.cells, area.entries) > limits.max_cells:
        raise BadInput(
            f"The sheet '{name}' spans {area.rows:,} rows by {area.columns:,} columns "
            f"({area.cells:,} cells), but at most {limits.max_cells:,} cells can be imported at once. "
            "Split it into smaller files, or delete any stray cell far below or to the right of the data."
        )


def check_total(areas: Iterable[UsedArea], limits: SpreadsheetLimits) -> None:
    """For formats whose reader loads every sheet at once: each sheet, and all of them together."""
    total = 0
    for area in areas:
        check_area(area, limits)
        total += area.cells + area.entries
    if total > limits.max_cells:
        raise BadInput(
            f"The file's sheets together hold over {limits.max_cells:,} cells, and all of them are read "
            "when it is opened. Delete the sheets you do not need, or split the file, and upload it again."
        )


def parse_xml(stream: IO[bytes], handlers: XmlHandlers) -> None:
    """Feed ``stream`` to expat in chunks. A DTD is refused: no workbook needs one, and entities are a
    way to make a small file expand."""
    parser = ParserCreate()
    parser.buffer_text = False

    def refuse_doctype(*_: object) -> None:
        raise BadInput(CORRUPT)

    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.StartElementHandler = handlers.start
    parser.EndElementHandler = handlers.end
    try:
        while not handlers.done:
            chunk = stream.read(_CHUNK)
            parser.Parse(chunk, not chunk)
            if not chunk:
                break
    except ExpatError as exc:
        raise BadInput(CORRUPT) from exc


class XmlHandlers:
    done = False

    def start(self, name: str, attributes: dict[str, str]) -> None:
        raise NotImplementedError

    def end(self, name: str) -> None:
        raise NotImplementedError


def local_name(name: str) -> str:
    return name.rpartition(":")[2]


def xml_attribute(attributes: dict[str, str], local: str) -> str | None:
    for key, value in attributes.items():
        if local_name(key) == local:
            return value
    return None


def _cell_ref(text: str, need_column: bool) -> tuple[int, int]:
    """'B12' -> (11, 1), 0-based, as calamine reads it; a reference calamine refuses is corrupt."""
    match = _CELL_REF.fullmatch(text)
    if match is None or int(match[2]) == 0 or (need_column and not match[1]):
        raise BadInput(CORRUPT)
    column = 0
    for char in match[1].upper():
        column = column * 26 + ord(char) - 64
    return int(match[2]) - 1, column - 1


class _WorksheetScan(XmlHandlers):
    """calamine's XlsxCellReader.next_cell, keeping only the bounding box and the number of cells."""

    def __init__(self) -> None:
        self.active = False
        self.row = self.column = 0  # calamine's running counters
        self.depth = 0  # > 0 inside a <c>
        self.filled = False
        self.position = (0, 0)
        self.entries = 0
        self.max_row = self.max_column = -1
        self.min_column: int | None = None

    def start(self, name: str, attributes: dict[str, str]) -> None:
        local = local_name(name)
        if not self.active:
            self.active = local == "sheetData"
            return
        if self.depth:
            if local in ("c", "row"):
                raise BadInput(CORRUPT)  # cells inside cells: no spreadsheet program writes that
            self.depth += 1
            self.filled = True
        elif local == "row":
            reference = xml_attribute(attributes, "r")
            if reference is not None:
                self.row = _cell_ref(reference, need_column=False)[0]
        elif local == "c":
            reference = xml_attribute(attributes, "r")
            if reference is not None:
                self.position = _cell_ref(reference, need_column=True)
                self.column = self.position[1]
            else:
                self.position = (self.row, self.column)
            self.depth, self.filled = 1, False

    def end(self, name: str) -> None:
        if not self.active:
            return
        if self.depth:
            self.depth -= 1
            if self.depth == 0:
                self.column += 1
                if self.filled:
                    row, column = self.position
                    self.entries += 1
                    self.max_row = max(self.max_row, row)
                    self.max_column = max(self.max_column, column)
                    if self.min_column is None or column < self.min_column:
                        self.min_column = column
            return
        local = local_name(name)
        if local == "row":
            self.row += 1
            self.column = 0
        elif local == "sheetData":
            self.done = True

    def area(self, sheet: str) -> UsedArea:
        if self.min_column is None:
            return UsedArea(sheet)
        return UsedArea(sheet, self.max_row + 1, self.max_column - self.min_column + 1, self.entries)


def check_xlsx_part(
    archive: zipfile.ZipFile, member: zipfile.ZipInfo, sheet: str, limits: SpreadsheetLimits, header_row: int
) -> None:
    """Raise BadInput when one worksheet part of an xlsx/xlsm package is over the limits.

    A quick bound comes first (:func:`_quick_area`); only a sheet it cannot bound, or bounds over the
    limits, is scanned cell by cell with expat (3x slower than calamine's own load), which also leaves
    out the valueless cells that the quick bound counts.
    """
    with archive.open(member) as stream:
        quick = _quick_area(stream, sheet, limits, header_row)
    if quick is not None:
        try:
            check_area(quick, limits, header_row)
            return
        except BadInput:
            pass
    scan = _WorksheetScan()
    with archive.open(member) as stream:
        parse_xml(stream, scan)
    check_area(scan.area(sheet), limits, header_row)


# One pass finds every cell tag (prefixed or not). A tag in the plain form Excel, LibreOffice and
# openpyxl write (r first, once, quoted; then well-formed attributes) gives its row and column; any other
# tag gives empty groups, and the exact scan takes over. calamine reads attributes with its own loose
# parser, so only this form is sure to mean the same position to both.
# Possessive (*+, ++): the same matches as the plain quantifiers here (nothing after a name, a value or
# the attribute list can begin inside one), without the backtracking bookkeeping: 15% faster.
_ATTRIBUTES = rb"(?:\s++(?!r\s*=)[A-Za-z_][\w.:-]*+\s*+=\s*+(?:\"[^\"<]*+\"|'[^'<]*+'))*+\s*+/?>"
_CELL_FORM = rb"c(?:\s+r\s*=\s*\"([A-Za-z]{1,3})([0-9]{1,7})\"" + _ATTRIBUTES + rb"|(?=[\s/>]))"
_CELL = re.compile(rb"<" + _CELL_FORM)
_PREFIXED_CELL = re.compile(rb"<(?:[^\s<>/!?\"'=]*:)?" + _CELL_FORM)  # calamine matches the local name
_QUICK_CHUNK = 4 << 20
_FIRST_CHUNK = 256 << 10  # read tag by tag: it shows the columns the sheet uses to the faster search
_FAST_COLUMNS = 64  # past this many distinct columns, every chunk goes through findall


def _at_most(limit: int) -> bytes:
    """A pattern for the decimal numbers 1..``limit`` written without leading zeros."""
    digits = str(limit).encode()
    choices = [rb"[1-9][0-9]{0,%d}" % (len(digits) - 2)] if len(digits) > 1 else []
    for at, digit in enumerate(digits):
        lowest = ord("1") if at == 0 else ord("0")
        if digit > lowest:
            choices.append(digits[:at] + b"[%c-%c][0-9]{%d}" % (lowest, digit - 1, len(digits) - at - 1))
    choices.append(digits)
    return b"|".join(choices)


def _misfit(letters: set[bytes], max_row: int) -> re.Pattern[bytes]:
    """Finds a cell tag that is not in the plain form, or is in the plain form with a column not in
    ``letters`` or a row over ``max_row``: a chunk where it finds none holds only plain tags, in those
    columns, up to that row. (It reads every attribute, as the tag-by-tag pattern does: reading ``r``
    alone would be 2x faster again, but would let calamine, not the exact scan, judge a malformed tag.)"""
    columns = b"|".join(re.escape(text) for text in sorted(letters, key=len, reverse=True))
    return re.compile(
        rb'<c(?=[\s/>])(?!\s+r\s*=\s*"(?:'
        + columns
        + rb')(?=[0-9]{1,7}")0*(?:'
        + _at_most(max_row)
        + rb')"'
        + _ATTRIBUTES
        + rb")"
    )


def _misfit_search(
    letters: set[bytes], max_row: int, limits: SpreadsheetLimits, header_row: int
) -> tuple[re.Pattern[bytes] | None, int]:
    """:func:`_misfit` for the columns seen and the most rows the limits allow with them, and that row
    count; None when there are too many columns to list, or the sheet is over the limits already."""
    if len(letters) > _FAST_COLUMNS:
        return None, 0
    numbers = [_column_number(text) for text in letters]
    columns = max(numbers) - min(numbers) + 1
    rows = min(header_row + limits.max_rows, limits.max_cells // columns)
    if columns > limits.max_columns or rows < max(max_row, 1):
        return None, 0
    return _misfit(letters, rows), rows


def _quick_area(stream: IO[bytes], sheet: str, limits: SpreadsheetLimits, header_row: int) -> UsedArea | None:
    """An upper bound of the used area from the cells' ``r`` attributes alone, at C speed (a regular
    expression over the inflated XML, cut between tags); None when it cannot be sure: a cell tag not in
    the plain form (calamine may place it by counting), or text that is not ASCII-compatible XML.

    Every cell tag is counted, even in a comment or without a value, so the bound can only be too large.
    Once a chunk has shown the sheet's columns, a later chunk is only searched for a cell that does not
    fit them and the largest row the limits allow (:func:`_misfit`; no object per cell, ~1.7x faster); only
    a chunk where that search finds one is read tag by tag, and it then counts rows up to that ceiling.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="inflate") as inflater:
        return _scan(stream, sheet, limits, header_row, inflater)


def _scan(
    stream: IO[bytes],
    sheet: str,
    limits: SpreadsheetLimits,
    header_row: int,
    inflater: ThreadPoolExecutor,
) -> UsedArea | None:
    """:func:`_quick_area`'s loop. The next chunk is inflated by ``inflater`` while this one is
    searched: zlib lets go of the interpreter lock, so on two cores the inflating costs no time."""
    tags = max_row = ceiling = fits = 0
    letters: set[bytes] = set()
    misfit: re.Pattern[bytes] | None = None
    tail = b""
    chunk = stream.read(_FIRST_CHUNK)
    if 0 in chunk[:4] or chunk[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return None  # UTF-16 or UTF-32: expat reads it, a pattern over bytes does not
    ahead = inflater.submit(stream.read, _QUICK_CHUNK)
    while True:
        data = tail + chunk
        cut = data.rfind(b"<") if chunk else len(data)
        body, tail = data[:cut], data[cut:]
        if len(tail) > _QUICK_CHUNK:
            return None
        prefixed = b":c" in body
        if misfit is not None and not prefixed and misfit.search(body) is None:
            tags += body.count(b"<c")  # every cell tag, and a few other tags (<col>, <cfRule>)
            ceiling = max(ceiling, fits)
        else:
            found = (_PREFIXED_CELL if prefixed else _CELL).findall(body)
            if found:
                tags += len(found)
                seen = len(letters)
                letters.update(map(itemgetter(0), found))
                if b"" in letters:
                    return None
                max_row = max(max_row, *map(int, set(map(itemgetter(1), found))))
                if len(letters) != seen or misfit is None:
                    misfit, fits = _misfit_search(letters, max_row, limits, header_row)
        if not chunk:
            break
        chunk = ahead.result()
        ahead = inflater.submit(stream.read, _QUICK_CHUNK)
    if not tags:
        return UsedArea(sheet)
    if max_row == 0:
        return None  # calamine refuses row 0; let the exact scan say so
    columns = [_column_number(text) for text in letters]
    return UsedArea(sheet, max(max_row, ceiling), max(columns) - min(columns) + 1, tags)


def _column_number(letters: bytes) -> int:
    number = 0
    for char in letters.upper():
        number = number * 26 + char - 64
    return number


class _Collect(XmlHandlers):
    """Every element with a given local name, as its attributes (for the small package parts)."""

    def __init__(self, local: str) -> None:
        self.local = local
        self.found: list[dict[str, str]] = []

    def start(self, name: str, attributes: dict[str, str]) -> None:
        if local_name(name) == self.local:
            self.found.append(attributes)

    def end(self, name: str) -> None:
        pass


def _elements(
    archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], path: str, local: str
) -> list[dict[str, str]]:
    collect = _Collect(local)
    for member in _named(members, path):
        with archive.open(member) as stream:
            parse_xml(stream, collect)
    return collect.found


def _named(members: list[zipfile.ZipInfo], path: str) -> list[zipfile.ZipInfo]:
    """Members calamine may open for ``path``: it looks names up ignoring ASCII case and backslashes."""
    key = path.lower()
    return [m for m in members if m.filename == path or m.filename.replace("\\", "/").lower() == key]


def worksheet_parts(archive: zipfile.ZipFile, sheet: str) -> list[zipfile.ZipInfo]:
    """The parts calamine may read as the worksheet named ``sheet``, found as calamine finds them
    (_rels/.rels, workbook.xml, its relationships); every XML part when that finds nothing."""
    members = [m for m in archive.infolist() if not m.is_dir()]
    folders = set()
    for rel in _elements(archive, members, "_rels/.rels", "Relationship"):
        target = rel.get("Target")
        if target is not None and rel.get("Type", "").endswith("/relationships/officeDocument"):
            folders.add(target[: target.rfind("/") + 1].removeprefix("/"))
    parts: list[zipfile.ZipInfo] = []
    for folder in folders or {"xl/"}:
        ids = {
            value
            for element in _elements(archive, members, f"{folder}workbook.xml", "sheet")
            if element.get("name") == sheet
            for key, value in element.items()
            if local_name(key) == "id"
        }
        for rel in _elements(archive, members, f"{folder}_rels/workbook.xml.rels", "Relationship"):
            target = rel.get("Target")
            if rel.get("Id") in ids and target is not None:
                path = target[1:] if target.startswith("/") else folder + target
                parts.extend(m for m in _named(members, path) if m not in parts)
    return parts or [m for m in members if m.filename.lower().endswith(".xml")]
