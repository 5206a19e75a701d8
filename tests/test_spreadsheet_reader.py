"""open_sheet: format detection, every kind of bad upload, encodings, delimiters and header rows.

Every fixture is written into tmp_path at test time: xlsx with openpyxl, ods as a hand-made ZIP, xls as a
hand-made OLE2 compound file holding a minimal BIFF8 workbook stream.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import struct
import zipfile
from pathlib import Path

import openpyxl  # type: ignore[import-untyped, unused-ignore]
import pytest

from jobpulse.errors import BadInput
from jobpulse.spreadsheet import ImportOptions, Sheet, SpreadsheetLimits, open_sheet
from jobpulse.spreadsheet.sheet import CORRUPT, ENCRYPTED, NOT_A_SPREADSHEET, UNKNOWN_ENCODING

LIMITS = SpreadsheetLimits(max_uncompressed_bytes=50_000_000, max_rows=1000)
BIG = SpreadsheetLimits(max_uncompressed_bytes=50_000_000, max_rows=1_000_000)
Cell = str | float | int | bool | dt.date | None


# --- fixture writers ---------------------------------------------------------------------------------


def write_xlsx(path: Path, sheets: dict[str, list[list[Cell]]]) -> Path:
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.worksheets[0])
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for row_index, row in enumerate(rows, 1):
            for column_index, value in enumerate(row, 1):
                if value is not None:
                    sheet.cell(row=row_index, column=column_index, value=value)
    workbook.save(path)
    return path


def write_ods(path: Path, tables: dict[str, list[list[str | float]]]) -> Path:
    def cell(value: str | float) -> str:
        if isinstance(value, str):
            return f'<table:table-cell office:value-type="string"><text:p>{value}</text:p></table:table-cell>'
        return f'<table:table-cell office:value-type="float" office:value="{value}"/>'

    body = "".join(
        f'<table:table table:name="{name}">'
        + "".join(f"<table:table-row>{''.join(cell(v) for v in row)}</table:table-row>" for row in rows)
        + "</table:table>"
        for name, rows in tables.items()
    )
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content'
        ' xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
        ' xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"'
        ' xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
        f"<office:body><office:spreadsheet>{body}</office:spreadsheet></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest'
        ' xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
        '<manifest:file-entry manifest:full-path="/"'
        ' manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>"
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("META-INF/manifest.xml", manifest, compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
    return path


def _record(kind: int, data: bytes = b"") -> bytes:
    return struct.pack("<HH", kind, len(data)) + data


def biff8_workbook(sheet: str, rows: list[list[str | float]], *, encrypted: bool = False) -> bytes:
    """A minimal BIFF8 'Workbook' stream: globals (BOF, [FILEPASS], BOUNDSHEET, EOF) and one worksheet."""
    bof_globals = _record(0x0809, struct.pack("<HHHHII", 0x0600, 0x0005, 0x0DBB, 0x07CC, 0, 6))
    filepass = _record(0x002F, struct.pack("<HHH", 1, 1, 1) + bytes(48)) if encrypted else b""
    name = sheet.encode("utf-16-le")
    sheet_offset = len(bof_globals) + len(filepass) + 4 + 8 + len(name) + 4
    boundsheet = _record(0x0085, struct.pack("<IBBBB", sheet_offset, 0, 0, len(sheet), 1) + name)
    cells = b""
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if isinstance(value, str):
                text = struct.pack("<HB", len(value), 1) + value.encode("utf-16-le")
                cells += _record(0x0204, struct.pack("<HHH", r, c, 0) + text)  # LABEL
            else:
                cells += _record(0x0203, struct.pack("<HHHd", r, c, 0, value))  # NUMBER
    bof_sheet = _record(0x0809, struct.pack("<HHHHII", 0x0600, 0x0010, 0x0DBB, 0x07CC, 0, 6))
    return bof_globals + filepass + boundsheet + _record(0x000A) + bof_sheet + cells + _record(0x000A)


def ole2(stream_name: str, stream: bytes) -> bytes:
    """A version 3 compound file (512-byte sectors) with one stream, kept out of the mini stream."""
    end_of_chain, free, fat_sector, no_stream = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
    stream = stream.ljust(max(4096, -(-len(stream) // 512) * 512), b"\0")
    sectors = len(stream) // 512
    fat = [fat_sector, end_of_chain, *range(3, 2 + sectors), end_of_chain]
    fat += [free] * (128 - len(fat))
    header = (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
        + bytes(16)
        + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6)
        + bytes(6)
        + struct.pack("<9I", 0, 1, 1, 0, 4096, end_of_chain, 0, end_of_chain, 0)
        + struct.pack("<109I", 0, *[free] * 108)
    )

    def entry(name: str, kind: int, child: int, start: int, size: int) -> bytes:
        encoded = (name + "\0").encode("utf-16-le") if name else b""
        return (
            encoded.ljust(64, b"\0")
            + struct.pack("<HBBIII", len(encoded), kind, 1, no_stream, no_stream, child)
            + bytes(36)
            + struct.pack("<IQ", start, size)
        )

    directory = (
        entry("Root Entry", 5, 1, end_of_chain, 0)
        + entry(stream_name, 2, no_stream, 2, len(stream))
        + entry("", 0, no_stream, 0, 0) * 2
    )
    return header + struct.pack("<128I", *fat) + directory + stream


def write_csv(path: Path, rows: list[list[str]], *, encoding: str = "utf-8", delimiter: str = ",") -> Path:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def read(
    path: Path, filename: str | None = None, limits: SpreadsheetLimits = LIMITS, **options: object
) -> Sheet:
    return open_sheet(path, filename or path.name, ImportOptions.model_validate(options), limits)


def rejection(
    path: Path, filename: str | None = None, limits: SpreadsheetLimits = LIMITS, **options: object
) -> str:
    """The BadInput message for this upload, checked to be free of the server's paths."""
    with pytest.raises(BadInput) as caught:
        read(path, filename, limits, **options)
    message = caught.value.message
    assert str(path.parent) not in message
    assert "Traceback" not in message
    return message


PEOPLE: list[list[Cell]] = [["name", "age", "joined"], ["Kim", 30, dt.date(2024, 1, 2)], ["Lee", 41.5, None]]


# --- spreadsheets that read -----------------------------------------------------------------------------


def test_xlsx_header_rows_and_types(tmp_path: Path) -> None:
    sheet = read(write_xlsx(tmp_path / "people.xlsx", {"People": PEOPLE}))
    assert (sheet.format, sheet.sheet_name, sheet.header, sheet.total_rows) == (
        "xlsx",
        "People",
        ["name", "age", "joined"],
        2,
    )
    rows = list(sheet.rows())
    assert rows == [(2, ["Kim", 30.0, dt.date(2024, 1, 2)]), (3, ["Lee", 41.5, None])]
    assert type(rows[0][1][1]) is float  # calamine reads every xlsx number as a float
    assert list(sheet.rows()) == rows  # rows() starts again each time


def test_xlsx_date_and_datetime_cells(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "dates.xlsx",
        {"S": [["when", "at"], [dt.date(2023, 12, 31), dt.datetime(2024, 2, 29, 13, 45)]]},
    )
    assert list(read(path).rows()) == [(2, [dt.date(2023, 12, 31), dt.datetime(2024, 2, 29, 13, 45)])]


def test_header_row_3_with_title_rows_and_blank_rows_skipped(tmp_path: Path) -> None:
    rows: list[list[Cell]] = [
        ["Quarterly report"],
        [],
        ["id", "", "id"],
        [1, "a", 10],
        [None, None, None],
        [2, "b", 20],
    ]
    sheet = read(write_xlsx(tmp_path / "report.xlsx", {"R": rows}), header_row=3)
    assert sheet.header == ["id", "column_2", "id_2"]
    assert sheet.total_rows == 3  # counts the blank row 5, which rows() skips
    assert [number for number, _ in sheet.rows()] == [4, 6]


def test_data_starting_below_and_right_of_a1(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "offset.xlsx", {"S": [[], [None, "a", "b"], [None, 1, 2]]})
    sheet = read(path, header_row=2)
    assert sheet.header == ["a", "b"]
    assert list(sheet.rows()) == [(3, [1, 2])]


def test_sheet_by_name_index_and_case(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "two.xlsx", {"First": [["a"], [1]], "Second": [["b"], [2], [3]]})
    assert read(path).sheet_name == "First"
    assert read(path, sheet=1).header == ["b"]
    assert read(path, sheet="Second").total_rows == 2
    assert read(path, sheet=" second ").sheet_name == "Second"


def test_bad_sheet_name_and_index_list_the_sheets(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "two.xlsx", {"First": [["a"], [1]], "Second": [["b"], [2]]})
    message = rejection(path, sheet="Third")
    assert "'Third'" in message
    assert "'First', 'Second'" in message
    message = rejection(path, sheet=2)
    assert "number 2" in message
    assert "'First', 'Second'" in message


def test_format_comes_from_the_content_when_the_name_claims_none(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "upload", {"S": [["a"], [1]]})  # stored without an extension
    assert read(path, "data").format == "xlsx"
    assert read(path, "data.bin").format == "xlsx"
    assert read(path, "macros.xlsm").format == "xlsm"
    text = tmp_path / "text"
    text.write_text("PK,name\n1,2\n", encoding="utf-8")  # starts like a ZIP, but is text
    assert read(text, "export").format == "csv"
    assert read(text, "export").header == ["PK", "name"]


def test_ods(tmp_path: Path) -> None:
    path = write_ods(tmp_path / "people.ods", {"People": [["name", "age"], ["홍길동", 30.0], ["Kim", 41.5]]})
    sheet = read(path, "people.ods")
    assert (sheet.format, sheet.sheet_name, sheet.header, sheet.total_rows) == (
        "ods",
        "People",
        ["name", "age"],
        2,
    )
    assert list(sheet.rows()) == [(2, ["홍길동", 30.0]), (3, ["Kim", 41.5])]


def test_xls(tmp_path: Path) -> None:
    path = tmp_path / "people.xls"
    path.write_bytes(
        ole2("Workbook", biff8_workbook("Data", [["name", "age"], ["홍길동", 30.0], ["Kim", 41.5]]))
    )
    sheet = read(path)
    assert (sheet.format, sheet.sheet_name, sheet.header, sheet.total_rows) == (
        "xls",
        "Data",
        ["name", "age"],
        2,
    )
    assert list(sheet.rows()) == [(2, ["홍길동", 30.0]), (3, ["Kim", 41.5])]


# --- bad uploads -------------------------------------------------------------------------------------


def test_empty_upload(tmp_path: Path) -> None:
    path = tmp_path / "empty.xlsx"
    path.write_bytes(b"")
    assert rejection(path) == "The file is empty."


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("random.xlsx", random.Random(1).randbytes(4096)),
        ("report.xlsx", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"),
        ("photo.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + random.Random(2).randbytes(512)),
        ("photo.xlsx", b"\xff\xd8\xff\xe0\x00\x10JFIF" + random.Random(3).randbytes(512)),
        ("page.xls", b"<!DOCTYPE html>\n<html><body><table><tr><td>1</td></tr></table></body></html>\n"),
        ("binary.csv", bytes(range(1, 32)) * 20),
    ],
)
def test_not_a_spreadsheet(tmp_path: Path, filename: str, content: bytes) -> None:
    path = tmp_path / filename
    path.write_bytes(content)
    assert rejection(path) == NOT_A_SPREADSHEET


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_without_nul_named_csv(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "noise.csv"
    path.write_bytes(random.Random(seed).randbytes(3000).replace(b"\0", b"\x01"))
    assert rejection(path) in (NOT_A_SPREADSHEET, UNKNOWN_ENCODING)


def test_zip_that_is_not_a_spreadsheet(tmp_path: Path) -> None:
    path = tmp_path / "letter.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("word/document.xml", "<w:document/>")
    assert rejection(path) == NOT_A_SPREADSHEET


def test_ole2_file_without_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "letter.xls"
    path.write_bytes(ole2("WordDocument", b"x" * 100))
    assert rejection(path) == NOT_A_SPREADSHEET


def test_truncated_xlsx(tmp_path: Path) -> None:
    body: list[list[Cell]] = [[i, f"row {i}"] for i in range(500)]
    rows: list[list[Cell]] = [["n", "text"], *body]
    data = write_xlsx(tmp_path / "full.xlsx", {"S": rows}).read_bytes()
    path = tmp_path / "half.xlsx"
    path.write_bytes(data[: len(data) // 2])
    assert rejection(path) == CORRUPT


def test_xlsx_with_broken_sheet_xml(tmp_path: Path) -> None:
    source = write_xlsx(tmp_path / "good.xlsx", {"S": [["a"], [1]]})
    path = tmp_path / "broken.xlsx"
    with zipfile.ZipFile(source) as good, zipfile.ZipFile(path, "w") as bad:
        for member in good.infolist():
            data = good.read(member)
            if member.filename == "xl/worksheets/sheet1.xml":
                data = data[: len(data) // 2]  # unclosed elements
            bad.writestr(member, data)
    assert rejection(path) == CORRUPT


def test_zip_member_lying_about_its_size(tmp_path: Path) -> None:
    body: list[list[Cell]] = [[i] for i in range(200)]
    path = write_xlsx(tmp_path / "liar.xlsx", {"S": [["a"], *body]})
    with zipfile.ZipFile(path) as archive:
        sheet_size = archive.getinfo("xl/worksheets/sheet1.xml").file_size
    data = bytearray(path.read_bytes())
    name = b"xl/worksheets/sheet1.xml"
    entry = data.index(b"PK\x01\x02")  # the central directory's first entry
    while data[entry + 46 : entry + 46 + len(name)] != name:
        entry = data.index(b"PK\x01\x02", entry + 4)
    assert struct.unpack_from("<I", data, entry + 24)[0] == sheet_size
    struct.pack_into("<I", data, entry + 24, 10)  # declare 10 bytes unpacked
    path.write_bytes(bytes(data))
    assert rejection(path) == CORRUPT


def test_zip_bomb(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "bomb.xlsx", {"S": [["a"], [1]]})
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/media/zeros.bin", bytes(20_000_000))  # packs to about 20 kB
    assert path.stat().st_size < 200_000
    message = rejection(path, limits=SpreadsheetLimits(max_uncompressed_bytes=5_000_000, max_rows=1000))
    assert "too large once unpacked" in message
    assert "5 MB" in message


def test_zip_with_an_encrypted_member(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "locked.xlsx", {"S": [["a"], [1]]})
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")
    struct.pack_into("<H", data, entry + 8, struct.unpack_from("<H", data, entry + 8)[0] | 1)
    path.write_bytes(bytes(data))
    assert rejection(path) == ENCRYPTED


def test_encrypted_ooxml_in_an_ole2_container(tmp_path: Path) -> None:
    path = tmp_path / "secret.xlsx"
    path.write_bytes(ole2("EncryptedPackage", random.Random(4).randbytes(2000)))
    assert rejection(path) == ENCRYPTED
    path.write_bytes(ole2("EncryptionInfo", random.Random(5).randbytes(2000)))
    assert rejection(path) == ENCRYPTED


@pytest.mark.parametrize("stored_as", ["secret.xls", "secret.XLS", "upload"])
def test_password_protected_xls(tmp_path: Path, stored_as: str) -> None:
    path = tmp_path / stored_as
    path.write_bytes(ole2("Workbook", biff8_workbook("S", [["a"], [1.0]], encrypted=True)))
    assert rejection(path, "secret.xls") == ENCRYPTED


def test_no_sheets(tmp_path: Path) -> None:
    assert rejection(write_ods(tmp_path / "none.ods", {})) == "The file has no sheets."


def test_empty_sheet(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "blank.xlsx", {"Blank": []})
    assert rejection(path) == "The sheet 'Blank' is empty."


def test_header_only(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "head.xlsx", {"S": [["a", "b"]]})
    assert "no data rows" in rejection(path)
    assert "no data rows" in rejection(write_csv(tmp_path / "head.csv", [["a", "b"], [], ["", ""]]))


def test_header_row_past_the_end(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "short.xlsx", {"S": [["a"], [1]]})
    assert "row 5" in rejection(path, header_row=5)
    assert "row 5" in rejection(write_csv(tmp_path / "short.csv", [["a"], ["1"]]), header_row=5)


def test_blank_header_row(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "gap.xlsx", {"S": [[], ["a"], [1]]})
    assert "Row 1" in rejection(path)


def test_too_many_rows(tmp_path: Path) -> None:
    small = SpreadsheetLimits(max_uncompressed_bytes=50_000_000, max_rows=3)
    rows: list[list[Cell]] = [["n"], [1], [2], [3], [4]]
    assert "at most 3" in rejection(write_xlsx(tmp_path / "many.xlsx", {"S": rows}), limits=small)
    many = write_csv(tmp_path / "many.csv", [[str(v) for v in row] for row in rows])
    assert "at most 3" in rejection(many, limits=small)
    assert read(many, limits=SpreadsheetLimits(50_000_000, 4)).total_rows == 4


# --- CSV -----------------------------------------------------------------------------------------------

KOREAN = [["이름", "도시"], ["홍길동", "서울"], ["김철수", "부산"]]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "cp949", "euc-kr"])
def test_csv_encodings(tmp_path: Path, encoding: str) -> None:
    sheet = read(write_csv(tmp_path / "people.csv", KOREAN, encoding=encoding))
    assert (sheet.format, sheet.sheet_name, sheet.header, sheet.total_rows) == (
        "csv",
        None,
        ["이름", "도시"],
        2,
    )
    assert list(sheet.rows()) == [(2, ["홍길동", "서울"]), (3, ["김철수", "부산"])]


def test_csv_short_korean_sample(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_bytes("이름,나이\n홍길동,30\n".encode("cp949"))  # charset-normalizer alone says utf_16_be
    assert list(read(path).rows()) == [(2, ["홍길동", "30"])]


def test_csv_latin1(tmp_path: Path) -> None:
    rows = [["name", "city"], ["José", "Málaga"], ["François", "Orléans"], ["Jürgen", "Köln"]]
    sheet = read(write_csv(tmp_path / "west.csv", rows, encoding="cp1252"))
    assert [values for _, values in sheet.rows()] == rows[1:]


def test_csv_non_utf8_after_the_sample(tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    ascii_rows = "".join(f"{i},plain ascii text\n" for i in range(70_000)).encode()
    assert len(ascii_rows) > 1 << 20
    path.write_bytes(b"id,name\n" + ascii_rows + "99,홍길동\n".encode("cp949"))
    sheet = read(path, limits=BIG)
    assert sheet.total_rows == 70_001
    assert list(sheet.rows())[-1] == (70_002, ["99", "홍길동"])


def test_csv_undecodable_after_the_sample(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"id,name\n" + b"1,x\n" * 300_000 + b"2,\xff\xff\xff\n")
    assert rejection(path, limits=BIG) == UNKNOWN_ENCODING


def test_csv_explicit_encoding(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "k.csv", KOREAN, encoding="cp949")
    assert read(path, encoding="euc-kr").header == ["이름", "도시"]
    assert "utf-8" in rejection(path, encoding="utf-8")


@pytest.mark.parametrize("delimiter", [";", "\t", "|", ","])
def test_csv_delimiters_are_sniffed(tmp_path: Path, delimiter: str) -> None:
    rows = [["id", "name", "amount"], ["1", "Kim, Minsu", "1,5"], ["2", "Lee", "2,25"]]
    sheet = read(write_csv(tmp_path / "d.csv", rows, delimiter=delimiter))
    assert sheet.header == ["id", "name", "amount"]
    assert [values for _, values in sheet.rows()] == rows[1:]


def test_csv_semicolons_with_decimal_commas(tmp_path: Path) -> None:
    rows = [["id", "price", "rate", "name"]] + [[str(i), f"{i},5", f"0,{i}", f"item {i}"] for i in range(500)]
    sheet = read(write_csv(tmp_path / "eu.csv", rows, delimiter=";"))
    assert sheet.header == ["id", "price", "rate", "name"]
    assert next(sheet.rows()) == (2, ["0", "0,5", "0,0", "item 0"])


def test_csv_explicit_delimiter_and_tsv_default(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "one.csv", [["a;b"], ["1;2"]], delimiter=",")
    assert read(path, delimiter=",").header == ["a;b"]
    single = tmp_path / "single.tsv"
    single.write_text("email\na@example.com\n", encoding="utf-8")
    assert read(single).header == ["email"]


def test_csv_header_row_3_blank_lines_and_ragged_rows(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text('Report\n\nid,name,,\n1,"multi\nline"\n\n2,b,extra,,\n,,\n3\n', encoding="utf-8")
    sheet = read(path, header_row=3)
    assert sheet.header == ["id", "name", "column_3"]
    assert sheet.total_rows == 3
    assert list(sheet.rows()) == [(4, ["1", "multi\nline"]), (6, ["2", "b", "extra"]), (8, ["3"])]


def test_csv_cell_too_large(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    path.write_text("a,b\n1," + "x" * 200_000 + "\n", encoding="utf-8")
    assert "row 2" in rejection(path)


def test_text_named_xlsx_is_refused_as_misnamed(tmp_path: Path) -> None:
    path = tmp_path / "notes.xlsx"
    path.write_text("just one line of notes\n", encoding="utf-8")
    assert rejection(path) == (
        "The file is named .xlsx but contains CSV text; rename it to .csv or save it as a real .xlsx "
        "file, and upload it again."
    )
