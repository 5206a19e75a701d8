"""Limits checked before a sheet is loaded (columns, rows, cells), misnamed files, compact records.

Every hostile file is built here, byte by byte where the format needs it. Loading one of them in this
process without the checks would abort it (calamine asks for hundreds of GB), so the one demonstration of
that runs in a subprocess.
"""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest
from celery.exceptions import SoftTimeLimitExceeded

from jobpulse.errors import BadInput
from jobpulse.spreadsheet import ImportOptions, RowValidator, Sheet, SpreadsheetLimits, open_sheet
from jobpulse.spreadsheet.sheet import CORRUPT, reading_user_file
from tests.jobs import poll_until_terminal, submit_file
from tests.test_spreadsheet_reader import _record, biff8_workbook, ole2, write_csv, write_ods, write_xlsx

SMALL = SpreadsheetLimits(max_uncompressed_bytes=50_000_000, max_rows=10, max_columns=5, max_cells=30)
DEFAULT = SpreadsheetLimits(max_uncompressed_bytes=500 * 1024 * 1024, max_rows=1_000_000)


def raw_xlsx(path: Path, sheet_data: str, *, before: str = "", prolog: str = "") -> Path:
    """A minimal xlsx whose one sheet 'S' holds ``sheet_data`` verbatim (``before``: e.g. <dimension>)."""
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    package = "http://schemas.openxmlformats.org/package/2006/relationships"
    parts = {
        "[Content_Types].xml": (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="xml" ContentType="application/xml"/></Types>'
        ),
        "_rels/.rels": f'<Relationships xmlns="{package}"><Relationship Id="rId1" '
        f'Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml": f'<workbook xmlns="{main}" xmlns:r="{rel}"><sheets>'
        '<sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": f'<Relationships xmlns="{package}"><Relationship Id="rId1" '
        f'Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>',
        "xl/worksheets/sheet1.xml": f'{prolog}<worksheet xmlns="{main}">{before}<sheetData>{sheet_data}'
        "</sheetData></worksheet>",
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            archive.writestr(name, text)
    return path


def raw_ods(path: Path, tables: str) -> Path:
    """An ods whose content.xml body is ``tables`` verbatim (write_ods's package, other content)."""
    write_ods(path, {})
    ns = (
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
    )
    content = (
        f'<office:document-content {ns} office:version="1.2"><office:body><office:spreadsheet>{tables}'
        "</office:spreadsheet></office:body></office:document-content>"
    )
    with zipfile.ZipFile(path) as old:
        members = {name: old.read(name) for name in old.namelist() if name != "content.xml"}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        archive.writestr("content.xml", content)
    return path


def cell(reference: str, value: str = "1") -> str:
    return f'<c r="{reference}"><v>{value}</v></c>'


def grid(rows: int, columns: int) -> str:
    letters = "ABCDEFGHIJ"
    return "".join(
        f'<row r="{r}">' + "".join(cell(f"{letters[c]}{r}") for c in range(columns)) + "</row>"
        for r in range(1, rows + 1)
    )


def read(
    path: Path, limits: SpreadsheetLimits = SMALL, filename: str | None = None, **options: object
) -> Sheet:
    return open_sheet(path, filename or path.name, ImportOptions.model_validate(options), limits)


def rejection(path: Path, limits: SpreadsheetLimits = SMALL, filename: str | None = None) -> str:
    with pytest.raises(BadInput) as caught:
        read(path, limits, filename)
    assert str(path.parent) not in caught.value.message
    return caught.value.message


# --- xlsx ----------------------------------------------------------------------------------------------


def test_a_far_corner_cell_is_refused_before_loading(tmp_path: Path) -> None:
    path = raw_xlsx(
        tmp_path / "corner.xlsx", f'<row r="1">{cell("A1")}</row><row r="900000">{cell("XFD900000")}</row>'
    )
    assert path.stat().st_size < 2000
    assert rejection(path, DEFAULT).startswith("The sheet 'S' has 16,384 columns")
    narrow = raw_xlsx(
        tmp_path / "tall.xlsx", f'<row r="1">{cell("A1")}</row><row r="900000">{cell("J900000")}</row>'
    )
    assert "899,999 data rows" in rejection(narrow, SpreadsheetLimits(10**9, 10_000))
    assert "spans 900,000 rows by 10 columns (9,000,000 cells)" in rejection(
        narrow, SpreadsheetLimits(10**9, 10**6, max_cells=1_000_000)
    )


def test_the_corner_cell_aborts_calamine_and_the_check_keeps_memory_small(tmp_path: Path) -> None:
    path = raw_xlsx(
        tmp_path / "corner.xlsx", f'<row r="1">{cell("A1")}</row><row r="900000">{cell("XFD900000")}</row>'
    )
    if Path("/proc/sys/vm/overcommit_memory").read_text().strip() != "1":  # with "1" it would not fail fast
        unchecked = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, python_calamine as c; "
                "c.CalamineWorkbook.from_path(sys.argv[1]).get_sheet_by_name('S')",
                str(path),
            ],
            capture_output=True,
            timeout=60,
        )
        assert unchecked.returncode == -signal.SIGABRT, unchecked
    checked = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from pathlib import Path\n"
            "from jobpulse.errors import BadInput\n"
            "from jobpulse.spreadsheet import ImportOptions, SpreadsheetLimits, open_sheet\n"
            "try:\n"
            "    limits = SpreadsheetLimits(524288000, 10**6)\n"
            "    open_sheet(Path(sys.argv[1]), 'c.xlsx', ImportOptions(), limits)\n"
            "except BadInput as exc:\n"
            "    peak = [line for line in open('/proc/self/status') if line.startswith('VmHWM:')]\n"
            "    print(peak[0].split()[1], exc.message)\n",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    peak_kib, message = checked.stdout.split(" ", 1)
    print(f"peak RSS opening the hostile xlsx: {int(peak_kib) / 1024:.0f} MiB")
    assert "16,384 columns" in message
    assert int(peak_kib) < 300 * 1024


def test_just_over_and_at_each_limit(tmp_path: Path) -> None:
    assert read(raw_xlsx(tmp_path / "five.xlsx", grid(6, 5))).header == ["1"] * 1 + [
        "1_2",
        "1_3",
        "1_4",
        "1_5",
    ]
    assert "has 6 columns" in rejection(raw_xlsx(tmp_path / "six.xlsx", grid(2, 6)))
    assert read(raw_xlsx(tmp_path / "rows.xlsx", grid(11, 2))).total_rows == 10
    assert "11 data rows" in rejection(raw_xlsx(tmp_path / "rows12.xlsx", grid(12, 2)))
    assert "spans 7 rows by 5 columns (35 cells)" in rejection(raw_xlsx(tmp_path / "cells.xlsx", grid(7, 5)))


def test_cells_without_references_are_placed_as_calamine_places_them(tmp_path: Path) -> None:
    six = "<row>" + "<c><v>1</v></c>" * 6 + "</row>"
    assert "has 6 columns" in rejection(raw_xlsx(tmp_path / "norefs.xlsx", six))
    # r="C1" moves the column counter, not the row: the next cell is D of the same <row>.
    moved = '<row r="1"><c r="A1"><v>1</v></c><c r="E1"><v>2</v></c><c><v>3</v></c></row>'
    assert "has 6 columns" in rejection(raw_xlsx(tmp_path / "moved.xlsx", moved))
    rows = "".join("<row><c><v>1</v></c></row>" for _ in range(12))  # rows without r count on
    assert "11 data rows" in rejection(raw_xlsx(tmp_path / "rowcount.xlsx", rows))


def test_prefixed_and_unusual_cell_tags_are_still_placed(tmp_path: Path) -> None:
    prefixed = '<x:row r="1"><x:c r="A1"><x:v>1</x:v></x:c><x:c r="F1"><x:v>1</x:v></x:c></x:row>'
    path = raw_xlsx(tmp_path / "prefixed.xlsx", prefixed.replace("<x:", "<").replace("</x:", "</"))
    assert "has 6 columns" in rejection(path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    sheet = members["xl/worksheets/sheet1.xml"].decode()
    sheet = sheet.replace(
        "<worksheet ", '<x:worksheet xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    )
    sheet = sheet.replace("</worksheet>", "</x:worksheet>").replace("sheetData>", "x:sheetData>")
    sheet = sheet.replace("<sheetData", "<x:sheetData").replace("</sheetData", "</x:sheetData")
    members["xl/worksheets/sheet1.xml"] = (
        sheet.replace("<row", "<x:row")
        .replace("</row", "</x:row")
        .replace("<c ", "<x:c ")
        .replace("</c>", "</x:c>")
        .replace("<v>", "<x:v>")
        .replace("</v>", "</x:v>")
        .encode()
    )
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    assert "has 6 columns" in rejection(path)
    # r after another attribute: calamine's own attribute reader decides, so the exact scan runs.
    late = '<row r="1"><c s="0" r="A1"><v>1</v></c><c t="n" r="F1"><v>1</v></c></row>'
    assert "has 6 columns" in rejection(raw_xlsx(tmp_path / "late.xlsx", late))
    twice = '<row r="1"><c r="A1"><v>1</v></c><c r="A1" t="n" r="F1"><v>1</v></c></row>'
    assert rejection(raw_xlsx(tmp_path / "twice.xlsx", twice)) == CORRUPT  # not well-formed XML


def test_cells_past_the_first_chunk_are_judged_as_in_it(tmp_path: Path) -> None:
    """Past its first 256 KB a sheet is searched for misfits only (dimensions._misfit): a far column, a
    new column, a deep row, a late or repeated ``r`` there get the verdicts the tag-by-tag scan gives."""
    rows = "".join(
        f'<row r="{r}">' + "".join(cell(f"{c}{r}") for c in "ABCDEF") + "</row>" for r in range(1, 20_001)
    )
    assert len(rows) > 4 * 256 * 1024

    def last(row: str) -> Path:
        return raw_xlsx(tmp_path / "big.xlsx", rows + f'<row r="20001">{row}</row>')

    assert "16,384 columns" in rejection(last(cell("XFD20001")), DEFAULT)
    deep = raw_xlsx(tmp_path / "deep.xlsx", rows + f'<row r="2000000">{cell("A2000000")}</row>')
    assert "1,999,999 data rows" in rejection(deep, DEFAULT)
    assert rejection(last('<c r="A20001" t="n" r="F20001"><v>1</v></c>'), DEFAULT) == CORRUPT
    assert len(read(last(cell("G20001")), DEFAULT).header) == 7
    late = '<c s="0" r="A20001"><v>1</v></c><c t="n" r="H20001"><v>1</v></c>'
    sheet = read(last(late), DEFAULT)
    assert (len(sheet.header), sheet.total_rows) == (8, 20_000)
    narrow = SpreadsheetLimits(10**9, 20_000, max_cells=6 * 20_001)
    assert read(last(cell("F20001")), narrow).total_rows == 20_000
    one_more = raw_xlsx(tmp_path / "one_more.xlsx", rows + f'<row r="20002">{cell("F20002")}</row>')
    assert "20,001 data rows" in rejection(one_more, narrow)


def test_valueless_cells_and_a_lying_dimension_do_not_count(tmp_path: Path) -> None:
    data = f'<row r="1">{cell("A1")}<c r="XFD1" s="1"/></row><row r="2">{cell("A2")}</row><row r="900000"/>'
    path = raw_xlsx(tmp_path / "styled.xlsx", data, before='<dimension ref="A1:XFD1048576"/>')
    sheet = read(path, DEFAULT)
    assert (sheet.header, sheet.total_rows) == (["1"], 1)


def test_a_doctype_and_a_duplicated_member_are_refused(tmp_path: Path) -> None:
    norefs = "<row><c><v>1</v></c></row>" * 2  # cells without r: read by the exact scan, which refuses a DTD
    dtd = raw_xlsx(tmp_path / "dtd.xlsx", norefs, prolog='<!DOCTYPE worksheet [<!ENTITY a "1">]>')
    assert rejection(dtd) == CORRUPT
    twice = raw_xlsx(tmp_path / "twice.xlsx", grid(2, 1))
    with zipfile.ZipFile(twice, "a") as archive:  # calamine finds names ignoring case
        archive.writestr("xl/worksheets/Sheet1.xml", grid(900, 9))
    assert rejection(twice) == CORRUPT
    twice = raw_xlsx(tmp_path / "twice2.xlsx", grid(2, 1))
    with zipfile.ZipFile(twice, "a") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr("xl/worksheets/sheet1.xml", grid(900, 9))
    assert rejection(twice) == CORRUPT


def test_xlsb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "book.xlsb"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("xl/workbook.bin", b"\x83\x01\x00")
    assert "Excel binary workbook (.xlsb)" in rejection(path)


# --- ods -----------------------------------------------------------------------------------------------

FLOAT = 'office:value-type="float" office:value="1"'


def test_ods_with_huge_repeats_is_refused(tmp_path: Path) -> None:
    huge = (
        '<table:table table:name="T"><table:table-row table:number-rows-repeated="1000000">'
        f'<table:table-cell table:number-columns-repeated="16384" {FLOAT}/></table:table-row></table:table>'
    )
    path = raw_ods(tmp_path / "repeats.ods", huge)
    assert path.stat().st_size < 2000
    assert rejection(path, DEFAULT).startswith("The sheet 'T' has 16,384 columns")
    tall = (
        '<table:table table:name="T"><table:table-row table:number-rows-repeated="30000000">'
        f"<table:table-cell {FLOAT}/></table:table-row></table:table>"
    )  # calamine caps repeats at 1,048,576 rows; 1,048,576 x 100 columns is still too many cells
    wide_tall = tall.replace(
        f"<table:table-cell {FLOAT}/>", f'<table:table-cell table:number-columns-repeated="100" {FLOAT}/>'
    )
    assert "spans 1,048,576 rows by 100 columns" in rejection(
        raw_ods(tmp_path / "tall.ods", wide_tall), DEFAULT
    )


def test_ods_trailing_empty_repeats_cost_nothing_and_every_table_counts(tmp_path: Path) -> None:
    empty = '<table:table-cell table:number-columns-repeated="{}"/>'
    row = f"<table:table-row><table:table-cell {FLOAT}/>{empty.format(16383)}</table:table-row>"
    filler = f'<table:table-row table:number-rows-repeated="1048570">{empty.format(16384)}</table:table-row>'
    normal = f'<table:table table:name="A">{row * 3}{filler}</table:table>'  # as LibreOffice writes it
    sheet = read(raw_ods(tmp_path / "libreoffice.ods", normal), DEFAULT)
    assert (sheet.header, sheet.total_rows) == (["1"], 2)
    six = f'<table:table-cell table:number-columns-repeated="6" {FLOAT}/>'
    other = f'<table:table table:name="B"><table:table-row>{six}</table:table-row></table:table>'
    assert "The sheet 'B' has 6 columns" in rejection(raw_ods(tmp_path / "two.ods", normal + other), SMALL)


# --- xls -----------------------------------------------------------------------------------------------


def xls_with(path: Path, extra: bytes) -> Path:
    """A one-sheet xls whose worksheet substream also holds the records ``extra``."""
    stream = biff8_workbook("Data", [["name"], ["Kim"]])
    eof = _record(0x000A)
    stream = stream[: -len(eof)] + extra + eof
    path.write_bytes(ole2("Workbook", stream))
    return path


def test_xls_far_column_and_lying_dimensions_are_refused(tmp_path: Path) -> None:
    far = xls_with(tmp_path / "far.xls", _record(0x0203, struct.pack("<HHHd", 3, 60000, 0, 1.0)))
    assert rejection(far, DEFAULT).startswith("The sheet 'Data' has 60,001 columns")
    lying = xls_with(
        tmp_path / "dims.xls", _record(0x0200, struct.pack("<IIHHH", 0, 1_000_000_000, 0, 200, 0))
    )
    assert "at most 20,000,000 cells" in rejection(lying, DEFAULT)
    assert read(xls_with(tmp_path / "fine.xls", b""), DEFAULT).header == ["name"]


def test_xls_with_a_cyclic_sector_chain_is_corrupt(tmp_path: Path) -> None:
    data = bytearray(ole2("Workbook", biff8_workbook("Data", [["name"], ["Kim"]])))
    fat_offset = 512  # sector 0 is the FAT; the stream starts at sector 2
    struct.pack_into("<I", data, fat_offset + 4 * 3, 2)  # sector 3 -> sector 2: a cycle
    path = tmp_path / "cycle.xls"
    path.write_bytes(bytes(data))
    assert rejection(path, DEFAULT) == CORRUPT


# --- csv and stored records -------------------------------------------------------------------------------


def test_csv_row_wider_than_the_limit_is_refused_by_number(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "wide.csv", [["a", "b"], ["1", "2"], ["x"] * 6, ["3", "4"]])
    assert rejection(path).startswith("Row 3 has 6 columns, but at most 5 can be imported.")
    padded = write_csv(tmp_path / "padded.csv", [["a", "b"], ["1", "2", "", "", "", "", "", ""]])
    assert read(padded).header == ["a", "b"]  # trailing empty cells do not count


def test_csv_cells_are_bounded_in_the_first_pass(tmp_path: Path) -> None:
    at_limit = write_csv(tmp_path / "at.csv", [["a", "b", "c"]] + [["1", "2", "3"]] * 10)
    assert read(at_limit).total_rows == 10
    limits = SpreadsheetLimits(50_000_000, 100, max_columns=5, max_cells=30)
    over = write_csv(tmp_path / "over.csv", [["a", "b", "c"]] + [["1", "2", "3"]] * 11)
    assert "more than 30 cells" in rejection(over, limits)


def test_one_wide_row_does_not_widen_every_record(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "one.csv", [["a", "b"], ["1", "2"], ["3", "4", "", "", "x"], ["5", ""]])
    sheet = read(path)
    assert sheet.header == ["a", "b", "column_3", "column_4", "column_5"]
    validator = RowValidator(sheet.header, None, dense_columns=sheet.named_columns)
    records = [validator.validate(number, values)[0] for number, values in sheet.rows()]
    assert records == [{"a": "1", "b": "2"}, {"a": "3", "b": "4", "column_5": "x"}, {"a": "5", "b": None}]
    assert validator.columns_out == sheet.header
    plain = write_csv(tmp_path / "plain.csv", [["a", "b"], ["1", ""]])  # a normal file: unchanged
    sheet = read(plain)
    validator = RowValidator(sheet.header, None, dense_columns=sheet.named_columns)
    assert [validator.validate(n, v)[0] for n, v in sheet.rows()] == [{"a": "1", "b": None}]


# --- misnamed files --------------------------------------------------------------------------------------


def _contents(tmp_path: Path) -> dict[str, Path]:
    csv_path = write_csv(tmp_path / "c", [["a"], ["1"]])
    xls_path = tmp_path / "x"
    xls_path.write_bytes(ole2("Workbook", biff8_workbook("Data", [["a"], [1.0]])))
    return {
        "xlsx": write_xlsx(tmp_path / "w", {"S": [["a"], [1]]}),
        "ods": write_ods(tmp_path / "o", {"S": [["a"], [1.0]]}),
        "xls": xls_path,
        "text": csv_path,
    }


MISNAMED = {
    ("text", "people.xlsx"): "The file is named .xlsx but contains CSV text; rename it to .csv",
    ("text", "people.xls"): "The file is named .xls but contains CSV text; rename it to .csv",
    ("text", "people.ods"): "The file is named .ods but contains CSV text; rename it to .csv",
    ("xlsx", "data.ods"): "The file is named .ods but contains an Excel workbook (.xlsx); rename it to .xlsx",
    ("xlsx", "data.csv"): "The file is named .csv but contains an Excel workbook (.xlsx)",
    ("xlsx", "data.xls"): "The file is named .xls but contains an Excel workbook (.xlsx)",
    (
        "ods",
        "data.xls",
    ): "The file is named .xls but contains an OpenDocument spreadsheet (.ods); rename it to .ods",
    ("ods", "data.XLSX"): "The file is named .xlsx but contains an OpenDocument spreadsheet (.ods)",
    (
        "xls",
        "data.xlsx",
    ): "The file is named .xlsx but contains an Excel 97-2003 workbook (.xls); rename it to .xls",
    ("xls", "data.txt"): "The file is named .txt but contains an Excel 97-2003 workbook (.xls)",
}


@pytest.mark.parametrize(("content", "filename"), list(MISNAMED))
def test_content_of_another_format_than_the_name_claims_is_refused(
    tmp_path: Path, content: str, filename: str
) -> None:
    message = rejection(_contents(tmp_path)[content], DEFAULT, filename)
    assert message.startswith(MISNAMED[content, filename]), message
    assert message.endswith("and upload it again.")


@pytest.mark.parametrize(
    ("content", "filename", "fmt"),
    [
        ("xlsx", "book.xlsx", "xlsx"),
        ("xlsx", "book.xlsm", "xlsm"),
        ("xlsx", "book", "xlsx"),
        ("xlsx", "book.dat", "xlsx"),
        ("ods", "sheet.ods", "ods"),
        ("xls", "old.xls", "xls"),
        ("xls", "old", "xls"),
        ("text", "list.csv", "csv"),
        ("text", "list.tsv", "csv"),
        ("text", "list.txt", "csv"),
        ("text", "list", "csv"),
    ],
)
def test_allowed_names(tmp_path: Path, content: str, filename: str, fmt: str) -> None:
    assert read(_contents(tmp_path)[content], DEFAULT, filename).format == fmt


# --- time limits -------------------------------------------------------------------------------------------


def test_a_soft_time_limit_inside_a_library_call_is_not_a_corrupt_file() -> None:
    with pytest.raises(SoftTimeLimitExceeded), reading_user_file():
        raise SoftTimeLimitExceeded()
    with pytest.raises(BadInput), reading_user_file():
        raise ValueError("a library's own failure is still the file's fault")


# --- end to end: the stored size ----------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_one_wide_row_costs_its_own_cells_in_the_database(http: httpx.Client, auth: dict[str, str]) -> None:
    # 2,000 narrow rows and one of 999 cells: stored with every key, the rows would hold ~28 MB.
    lines = ["id,name"] + [f"{n},person {n}" for n in range(2000)] + ["x," + ",".join(["y"] * 998)]
    content = ("\n".join(lines) + "\n").encode()
    job_id = submit_file(http, auth, content, "wide.csv").json()["id"]
    final = poll_until_terminal(http, auth, job_id)[-1]
    assert final["state"] == "SUCCESS", final
    stored, cursor = 0, None
    while True:
        params: dict[str, str | int] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = http.get(f"/jobs/{job_id}/rows/", headers=auth, params=params).json()
        stored += sum(len(json.dumps(item["data"])) for item in page["items"])
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert stored < 100_000, stored
    too_wide = ("id\n1\n" + ",".join(["y"] * 1001) + "\n").encode()
    job_id = submit_file(http, auth, too_wide, "wider.csv").json()["id"]
    final = poll_until_terminal(http, auth, job_id)[-1]
    assert final["state"] == "REJECTED_BAD_INPUT"
    assert final["error_reason"].startswith("Row 3 has 1,001 columns, but at most 1,000")


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_the_hostile_corner_ends_rejected_and_the_worker_lives(
    http: httpx.Client, auth: dict[str, str], tmp_path: Path
) -> None:
    path = raw_xlsx(
        tmp_path / "corner.xlsx", f'<row r="1">{cell("A1")}</row><row r="900000">{cell("XFD900000")}</row>'
    )
    job_id = submit_file(http, auth, path.read_bytes(), "corner.xlsx").json()["id"]
    final = poll_until_terminal(http, auth, job_id)[-1]
    assert final["state"] == "REJECTED_BAD_INPUT", final
    assert "16,384 columns" in final["error_reason"]
    good = submit_file(http, auth, b"a\n1\n", "after.csv").json()["id"]  # the same worker still serves
    assert poll_until_terminal(http, auth, good)[-1]["state"] == "SUCCESS"
