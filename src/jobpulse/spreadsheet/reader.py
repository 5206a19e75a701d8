"""Open an uploaded spreadsheet safely: find its format from its bytes, check it against the limits, and
hand back its header, its row count and an iterator over its rows.

Everything that is wrong with the user's file ends as :class:`~jobpulse.errors.BadInput` with a reason
written for the user; a library's exception never escapes. The format comes from the content, not the
name: a ZIP is an xlsx/xlsm/xlsb or an ods, an OLE2 compound file an xls (or an encrypted OOXML file),
anything else must be text and is read as CSV.

Spreadsheets are read with python-calamine, which loads the chosen sheet into memory; so before calling it
the ZIP's declared unpacked size is checked against ``max_uncompressed_bytes`` and every member is inflated
once, bounded by its declared size, so a member that lies about its size is caught as corrupt. CSV is
streamed twice: a first pass checks the encoding and counts the rows, a second one yields them.
"""

from __future__ import annotations

import codecs
import csv
import io
import mmap
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import python_calamine
from charset_normalizer import from_bytes

from jobpulse.errors import BadInput
from jobpulse.spreadsheet.options import ImportOptions
from jobpulse.spreadsheet.schema import cell_text, unique_names

__all__ = ["Row", "Sheet", "SpreadsheetLimits", "open_sheet"]

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

_SAMPLE_BYTES = 1 << 20  # what encoding detection and sniffing look at
_SNIFF_CHARS = 64 * 1024
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ODS_MIMETYPE = b"application/vnd.oasis.opendocument.spreadsheet"
_BINARY_MAGIC = (  # formats that can start with a run of plain text
    b"%PDF-",
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"\x1f\x8b",
    b"Rar!\x1a",
    b"7z\xbc\xaf",
    b"PK\x05\x06",
    b"PK\x07\x08",
    b"{\\rtf",
)
_MARKUP = (b"<?xml", b"<html", b"<!doctype", b"<table")  # SpreadsheetML 2003 or an HTML page named .xls
_TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
_CONTROL_CHARS = frozenset(chr(code) for code in range(32)) - set("\t\n\r\f\x1a")


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
        return _open_workbook(path, _inspect_ole(path), options, limits)
    return _open_csv(path, filename, head, len(head) == size, options, limits)


@contextmanager
def _reading_user_file() -> Iterator[None]:
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


def _too_large(limit: int) -> BadInput:
    return BadInput(
        f"The file is too large once unpacked (over {limit / 1_000_000:,.0f} MB). "
        "Split it into smaller files."
    )


def _inspect_zip(path: Path, filename: str, limits: SpreadsheetLimits) -> str:
    """The ZIP-based format ('xlsx', 'xlsm', 'xlsb' or 'ods'), after the zip-bomb and integrity checks."""
    with _reading_user_file():
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
            with _reading_user_file():
                mimetype = archive.read("mimetype").strip()
        if mimetype == _ODS_MIMETYPE:
            kind = "ods"
        elif "xl/workbook.xml" in names:
            macros = "xl/vbaProject.bin" in names or filename.lower().endswith(".xlsm")
            kind = "xlsm" if macros else "xlsx"
        elif "xl/workbook.bin" in names:
            kind = "xlsb"
        else:
            raise BadInput(NOT_A_SPREADSHEET)  # a .docx, a plain .zip, ...
        with _reading_user_file():
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
    with _named_for_calamine(path, kind) as named, _reading_user_file():
        workbook = python_calamine.CalamineWorkbook.from_path(named)
    with workbook:
        names = list(workbook.sheet_names)
        if not names:
            raise BadInput("The file has no sheets.")
        name = _pick_sheet(names, options.sheet, workbook.sheets_metadata)
        with _reading_user_file():
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
    header = _header([cell_text(cell) for cell in header_cells], header_row)

    def rows() -> Iterator[Row]:
        for number, raw in enumerate(islice(sheet.iter_rows(), header_row, None), header_row + 1):
            if raw.count("") != len(raw):
                yield number, [None if value == "" else value for value in raw]

    return Sheet(header, total, kind, name, rows)


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


def _header(texts: list[str], header_row: int) -> list[str]:
    if not any(texts):
        raise BadInput(
            f"Row {header_row}, which should hold the column names, is empty. Check the header row setting."
        )
    return unique_names(texts)


def _open_csv(
    path: Path, filename: str, head: bytes, complete: bool, options: ImportOptions, limits: SpreadsheetLimits
) -> Sheet:
    if head.startswith(_BINARY_MAGIC) or head.lstrip(b"\xef\xbb\xbf \t\r\n").lower().startswith(_MARKUP):
        raise BadInput(NOT_A_SPREADSHEET)
    text_suffix = filename.lower().endswith(_TEXT_SUFFIXES)
    for encoding in _candidate_encodings(head, complete, options.encoding):
        try:
            sample = codecs.getincrementaldecoder(encoding)().decode(head, final=complete)
        except UnicodeDecodeError:
            continue
        if sum(map(sample.count, _CONTROL_CHARS)) * 100 > len(sample):
            raise BadInput(NOT_A_SPREADSHEET)
        delimiter = options.delimiter or _sniff(sample, filename)
        try:
            header_cells, total, width = _scan_csv(path, encoding, delimiter, options.header_row, limits)
        except UnicodeDecodeError:
            continue  # the sample decoded but a later part does not: try the next candidate
        break
    else:
        if options.encoding is not None:
            raise BadInput(
                f"The file could not be read as {options.encoding} text. Check the encoding setting."
            )
        raise BadInput(UNKNOWN_ENCODING if text_suffix else NOT_A_SPREADSHEET)
    header_texts = [cell.strip() for cell in header_cells]
    width = max(width, _filled_width(header_texts))
    header = _header(header_texts[:width] + [""] * (width - len(header_texts)), options.header_row)
    header_row = options.header_row

    def rows() -> Iterator[Row]:
        with path.open(encoding=encoding, newline="") as file:
            for number, row in enumerate(
                islice(csv.reader(file, delimiter=delimiter), header_row, None), header_row + 1
            ):
                if any(row):
                    yield number, [cell or None for cell in row[:width]]

    return Sheet(header, total, "csv", None, rows)


def _candidate_encodings(head: bytes, complete: bool, chosen: str | None) -> Iterator[str]:
    """Encodings to try, most likely first; each decodes the sample, and the first pass checks the rest."""
    if chosen is not None:
        yield chosen
        return
    if head.startswith(codecs.BOM_UTF8):
        yield "utf-8-sig"
        return
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        yield "utf-16"
        return
    if b"\0" in head:  # text in a single-byte or multibyte encoding has no NUL: this is binary
        raise BadInput(NOT_A_SPREADSHEET)
    tried: set[str] = set()

    def fits(encoding: str) -> bool:
        name = codecs.lookup(encoding).name
        if name in tried:
            return False
        tried.add(name)
        try:
            codecs.getincrementaldecoder(name)().decode(head, final=complete)
        except UnicodeDecodeError:
            return False
        return True

    if fits("utf-8"):
        yield "utf-8"
    # Korean text is what charset-normalizer gets wrong most on short samples (it says utf_16_be).
    if _mostly_hangul(head[:65536].decode("cp949", errors="ignore")) and fits("cp949"):
        yield "cp949"
    with _reading_user_file():
        matches = from_bytes(head[:65536])
    best = matches.best()
    if best is not None:
        # Of the decodings that read equally well, prefer Windows-1252, the usual one of Western exports.
        western = any(m.chaos <= best.chaos and "cp1252" in m.could_be_from_charset for m in matches)
        if western and fits("cp1252"):
            yield "cp1252"
        if not best.encoding.startswith(("utf_16", "utf_32")) and fits(best.encoding):
            yield best.encoding
    if fits("cp949"):
        yield "cp949"


def _mostly_hangul(text: str) -> bool:
    non_ascii = sum(1 for char in text if char > "\x7f")
    hangul = sum(1 for char in text if "\uac00" <= char <= "\ud7a3")
    return hangul > 0 and hangul * 2 >= non_ascii


def _sniff(sample: str, filename: str) -> str:
    """The delimiter among ``,;\t|`` that splits the sample's records into the most consistent field count.

    csv.Sniffer is not used: on a ';' file with decimal commas ("1,5") it picks ','.
    """
    text = sample[:_SNIFF_CHARS]
    if len(sample) > _SNIFF_CHARS and "\n" in text:
        text = text[: text.rindex("\n")]  # whole lines only
    best = "\t" if filename.lower().endswith(".tsv") else ","
    best_score = (0.0, 1)
    for delimiter in ",;\t|":
        try:
            counts = [
                len(row) for row in islice(csv.reader(io.StringIO(text), delimiter=delimiter), 200) if row
            ]
        except csv.Error:
            continue
        if counts:
            modal = max(set(counts), key=counts.count)
            score = (counts.count(modal) / len(counts), modal)  # how consistent, then how many fields
            if modal > 1 and score > best_score:
                best, best_score = delimiter, score
    return best


def _scan_csv(
    path: Path, encoding: str, delimiter: str, header_row: int, limits: SpreadsheetLimits
) -> tuple[list[str], int, int]:
    """First pass: the header cells, the number of non-blank data rows and the widest data row's width.

    Raises UnicodeDecodeError if the file does not decode as ``encoding``.
    """
    header: list[str] | None = None
    total = width = number = 0
    with path.open(encoding=encoding, newline="") as file:
        reader = csv.reader(file, delimiter=delimiter)
        try:
            for number, row in enumerate(reader, 1):
                if number <= header_row:
                    if number == header_row:
                        header = row
                    continue
                if not any(row):
                    continue
                total += 1
                if total > limits.max_rows:
                    raise BadInput(
                        f"The file has more than {limits.max_rows:,} data rows, but at most "
                        f"{limits.max_rows:,} can be imported at once. Split it into smaller files."
                    )
                if len(row) > width:
                    width = max(width, _filled_width(row))
        except csv.Error as exc:
            raise BadInput(
                f"The file could not be read as CSV: row {number + 1} is malformed (for example, a quote "
                "that is never closed or a cell that is far too long)."
            ) from exc
    if header is None:
        raise BadInput(f"The header row is set to row {header_row}, but the file has only {number} rows.")
    if total == 0:
        raise BadInput("The file has a header row but no data rows.")
    return header, total, width


def _filled_width(cells: list[str]) -> int:
    """The number of cells up to and including the last non-empty one."""
    for index in range(len(cells) - 1, -1, -1):
        if cells[index]:
            return index + 1
    return 0
