"""CSV and other delimited text: the encoding is detected (BOM, UTF-8, Korean cp949, charset-normalizer),
the delimiter sniffed, and the file streamed twice: a first pass checks the encoding and counts the rows,
a second one yields them."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from charset_normalizer import from_bytes

from jobpulse.errors import BadInput
from jobpulse.spreadsheet.options import ImportOptions
from jobpulse.spreadsheet.sheet import (
    NOT_A_SPREADSHEET,
    UNKNOWN_ENCODING,
    Row,
    Sheet,
    SpreadsheetLimits,
    header_names,
    misnamed,
    reading_user_file,
)

__all__ = ["open_delimited"]

_SNIFF_CHARS = 64 * 1024
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


def open_delimited(
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
        if (wrong := misnamed(filename, "text")) is not None:
            raise wrong  # text named .xlsx, .xls or .ods
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
    named_width = _filled_width(header_texts)
    width = max(width, named_width)
    header = header_names(header_texts[:width] + [""] * (width - len(header_texts)), options.header_row)
    header_row = options.header_row

    def rows() -> Iterator[Row]:
        with path.open(encoding=encoding, newline="") as file:
            for number, row in enumerate(
                islice(csv.reader(file, delimiter=delimiter), header_row, None), header_row + 1
            ):
                if any(row):
                    yield number, [cell or None for cell in row[:width]]

    return Sheet(header, total, "csv", None, rows, named_width)


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
    with reading_user_file():
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
    """First pass: the header cells, the number of non-blank data rows and the widest data row's width,
    checked against the row, column and cell limits (cells: each data row counts as wide as the header,
    or as itself where it is wider).

    Raises UnicodeDecodeError if the file does not decode as ``encoding``.
    """
    header: list[str] | None = None
    total = width = number = cells = header_width = 0
    with path.open(encoding=encoding, newline="") as file:
        reader = csv.reader(file, delimiter=delimiter)
        try:
            for number, row in enumerate(reader, 1):
                if len(row) > limits.max_columns and _filled_width(row) > limits.max_columns:
                    raise BadInput(
                        f"Row {number} has {_filled_width(row):,} columns, but at most "
                        f"{limits.max_columns:,} can be imported. Check the delimiter, or remove the "
                        "extra cells from that row."
                    )
                if number <= header_row:
                    if number == header_row:
                        header, header_width = row, len(row)
                    continue
                if not any(row):
                    continue
                total += 1
                if total > limits.max_rows:
                    raise BadInput(
                        f"The file has more than {limits.max_rows:,} data rows, but at most "
                        f"{limits.max_rows:,} can be imported at once. Split it into smaller files."
                    )
                cells += max(len(row), header_width)
                if cells > limits.max_cells:
                    raise BadInput(
                        f"The file has more than {limits.max_cells:,} cells (rows x columns), but at most "
                        f"{limits.max_cells:,} can be imported at once. Split it into smaller files."
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
