"""Open an uploaded spreadsheet safely: find its format from its bytes, check it against the limits, and
hand back its header, its row count and an iterator over its rows.

Everything that is wrong with the user's file ends as :class:`~jobpulse.errors.BadInput` with a reason
written for the user; a library's exception never escapes. The format comes from the content, not the
name: a ZIP is an xlsx/xlsm/xlsb or an ods, an OLE2 compound file an xls (or an encrypted OOXML file),
anything else must be text and is read as CSV.

Spreadsheets are read with python-calamine, which loads the chosen sheet into memory; so before calling it
the ZIP's declared unpacked size is checked against ``max_uncompressed_bytes`` and every member is inflated
once, bounded by its declared size, so a member that lies about its size is caught as corrupt. CSV is
read by :mod:`jobpulse.spreadsheet.delimited`.
"""

from __future__ import annotations

import mmap
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import cast

import python_calamine

from jobpulse.errors import BadInput
from jobpulse.spreadsheet.biff import measure_xls
from jobpulse.spreadsheet.delimited import open_delimited
from jobpulse.spreadsheet.dimensions import check_total, check_xlsx_part, worksheet_parts
from jobpulse.spreadsheet.opendocument import measure_ods
from jobpulse.spreadsheet.options import ImportOptions
from jobpulse.spreadsheet.schema import cell_text
from jobpulse.spreadsheet.sheet import (
    CORRUPT,
    ENCRYPTED,
    NOT_A_SPREADSHEET,
    Row,
    Sheet,
    SpreadsheetLimits,
    header_names,
    misnamed,
    reading_user_file,
)

__all__ = ["CORRUPT", "ENCRYPTED", "NOT_A_SPREADSHEET", "Row", "Sheet", "SpreadsheetLimits", "open_sheet"]

_SAMPLE_BYTES = 1 << 20  # what format detection, encoding detection and sniffing look at
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ODS_MIMETYPE = b"application/vnd.oasis.opendocument.spreadsheet"
XLSB = (
    "The file is an Excel binary workbook (.xlsb), which jobpulse does not import. Open it in Excel, "
    "save it as an Excel Workbook (.xlsx) and upload that instead."
)


def open_sheet(path: Path, filename: str, options: ImportOptions, limits: SpreadsheetLimits) -> Sheet:
    """Open the uploaded file at ``path`` (``filename`` is the name the user gave it) for reading.

    Raises :class:`BadInput`, with a reason for the user, for anything wrong with the file.
    """
    size = path.stat().st_size
    if size == 0:
        raise BadInput("The file is empty.")
    with path.open("rb") as file:
        head = file.read(_SAMPLE_BYTES)
    if head.startswith(_ZIP_MAGIC):
        return _open_workbook(path, _inspect_zip(path, filename, limits), options, limits)
    if head.startswith(_OLE_MAGIC):
        kind = _inspect_ole(path)
        if (wrong := misnamed(filename, "xls")) is not None:
            raise wrong
        return _open_workbook(path, kind, options, limits)
    return open_delimited(path, filename, head, len(head) == size, options, limits)


def _too_large(limit: int) -> BadInput:
    return BadInput(
        f"The file is too large once unpacked (over {limit / (1024 * 1024):,.0f} MB). "
        "Split it into smaller files."
    )


def _inspect_zip(path: Path, filename: str, limits: SpreadsheetLimits) -> str:
    """The ZIP-based format ('xlsx', 'xlsm' or 'ods'), after the zip-bomb, name and integrity checks."""
    with reading_user_file():
        archive = zipfile.ZipFile(path)
    with archive:
        members = archive.infolist()
        names = {member.filename for member in members}
        if any(member.flag_bits & 0x1 for member in members):
            raise BadInput(ENCRYPTED)
        if sum(member.file_size for member in members) > limits.max_uncompressed_bytes:
            raise _too_large(limits.max_uncompressed_bytes)
        mimetype = b""
        if "mimetype" in names and archive.getinfo("mimetype").file_size < 200:
            with reading_user_file():
                mimetype = archive.read("mimetype").strip()
        if mimetype == _ODS_MIMETYPE:
            kind = "ods"
        elif "xl/workbook.xml" in names:
            macros = "xl/vbaProject.bin" in names or filename.lower().endswith(".xlsm")
            kind = "xlsm" if macros else "xlsx"
        elif "xl/workbook.bin" in names:
            raise BadInput(XLSB)
        else:
            raise BadInput(NOT_A_SPREADSHEET)  # a .docx, a plain .zip, ...
        if (wrong := misnamed(filename, "ods" if kind == "ods" else "xlsx")) is not None:
            raise wrong
        if len(names) != len(members) or len({n.replace("\\", "/").lower() for n in names}) != len(names):
            raise BadInput(CORRUPT)  # two members under one name: readers disagree on which one counts
        with reading_user_file():
            for member in members:
                with archive.open(member) as stream:  # zipfile stops at the declared size and checks the CRC
                    while stream.read(1 << 20):
                        pass
    return kind


def _inspect_ole(path: Path) -> str:
    """'xls', unless the OLE2 file is an encrypted OOXML package or holds no workbook at all."""
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        # Directory entry names are UTF-16LE; searching the whole file is simpler than walking the FAT.
        def has(name: str) -> bool:
            return data.find(name.encode("utf-16-le")) != -1

        if has("EncryptionInfo") or has("EncryptedPackage"):
            raise BadInput(ENCRYPTED)
        if not any(has(name) for name in ("Workbook", "WORKBOOK", "Book\0", "BOOK\0")):
            raise BadInput(NOT_A_SPREADSHEET)  # a .doc or .msg renamed
    return "xls"


@contextmanager
def _named_for_calamine(path: Path, kind: str) -> Iterator[Path]:
    """``path`` under a name ending in ``.kind``: calamine picks its reader (and its errors) by extension."""
    if path.suffix == f".{kind}":  # calamine's extension match is case-sensitive
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="jobpulse-") as directory:
        link = Path(directory) / f"upload.{kind}"
        link.symlink_to(path.resolve())
        yield link


def _open_workbook(path: Path, kind: str, options: ImportOptions, limits: SpreadsheetLimits) -> Sheet:
    # calamine reads every sheet of an ods or xls file when it opens it, and one xlsx sheet on demand:
    # each is measured from the file first (dimensions.py, biff.py), as loading one too large aborts.
    with reading_user_file():
        if kind == "ods":
            with zipfile.ZipFile(path) as archive:
                check_total(measure_ods(archive, archive.infolist()), limits)
        elif kind == "xls":
            check_total(measure_xls(path, limits), limits)
    with _named_for_calamine(path, kind) as named, reading_user_file():
        workbook = python_calamine.CalamineWorkbook.from_path(named)
    with workbook:
        names = list(workbook.sheet_names)
        if not names:
            raise BadInput("The file has no sheets.")
        name = _pick_sheet(names, options.sheet, workbook.sheets_metadata)
        if kind != "ods" and kind != "xls":
            with reading_user_file(), zipfile.ZipFile(path) as archive:
                for part in worksheet_parts(archive, name):
                    check_xlsx_part(archive, part, name, limits, options.header_row)
        with reading_user_file():
            sheet = workbook.get_sheet_by_name(name)
    end = sheet.end
    if end is None:  # also: iter_rows() panics on an empty sheet
        raise BadInput(f"The sheet '{name}' is empty.")
    last_row, header_row = end[0] + 1, options.header_row
    if header_row > last_row:
        raise BadInput(
            f"The header row is set to row {header_row}, but the sheet '{name}' has only {last_row} rows."
        )
    total = last_row - header_row
    if total == 0:
        raise BadInput(f"The sheet '{name}' has a header row but no data rows.")
    if total > limits.max_rows:
        raise BadInput(
            f"The sheet '{name}' has {total:,} data rows, but at most {limits.max_rows:,} can be imported "
            "at once. Split it into smaller files."
        )
    # iter_rows() pads the rows above the data with empty ones, so row i of it is the file's row i.
    header_cells = next(islice(sheet.iter_rows(), header_row - 1, None))
    header_texts = [cell_text(cell) for cell in header_cells]
    header = header_names(header_texts, header_row)
    named_width = len(header_texts)
    while named_width and not header_texts[named_width - 1]:
        named_width -= 1

    def rows() -> Iterator[Row]:
        cells = cast(Iterator[list[object]], sheet.iter_rows())  # each row a fresh list, ours to hand on
        for number, raw in enumerate(islice(cells, header_row, None), header_row + 1):
            empty = raw.count("")
            if not empty:  # most rows: no copy
                yield number, raw
            elif empty != len(raw):
                yield number, [None if value == "" else value for value in raw]

    return Sheet(header, total, kind, name, rows, named_width)


def _pick_sheet(
    names: list[str], wanted: str | int | None, metadata: list[python_calamine.SheetMetadata]
) -> str:
    if wanted is None:  # the first worksheet, passing over chart sheets
        worksheets = [meta.name for meta in metadata if meta.typ == python_calamine.SheetTypeEnum.WorkSheet]
        return worksheets[0] if worksheets else names[0]
    listing = ", ".join(f"'{name}'" for name in names[:20]) + (", ..." if len(names) > 20 else "")
    if isinstance(wanted, int):
        if wanted < len(names):
            return names[wanted]
        raise BadInput(
            f"The file has no sheet number {wanted} (the first sheet is number 0); it has {len(names)} "
            f"sheet{'s' if len(names) > 1 else ''}: {listing}."
        )
    if wanted in names:
        return wanted
    folded = [name for name in names if name.strip().casefold() == wanted.strip().casefold()]
    if len(folded) == 1:
        return folded[0]
    raise BadInput(f"The file has no sheet named '{wanted}'. Its sheets are: {listing}.")
