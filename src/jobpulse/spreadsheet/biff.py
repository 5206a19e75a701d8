"""The used area of every sheet of an .xls (BIFF in an OLE2 compound file), measured before calamine opens it.

BIFF8 sheets are at most 65,536 x 256, but that bound is in the format, not in the reader: calamine reads
a cell's column as 16 bits, reserves room for the area a DIMENSIONS record declares, and reads every sheet
when the file is opened. Its compound-file layer also trusts the header's counts and follows sector chains
without a cycle check. So a small .xls can make it ask for more memory than exists, which aborts the
process. This module walks the compound file and the BIFF records the way calamine does, refusing what
would make it allocate without bound (counts beyond the file, cyclic chains) as corrupt and measuring the
rest; :func:`jobpulse.spreadsheet.dimensions.check_total` then applies the limits.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path

from jobpulse.errors import BadInput
from jobpulse.spreadsheet.dimensions import UsedArea
from jobpulse.spreadsheet.sheet import CORRUPT, ENCRYPTED, SpreadsheetLimits

__all__ = ["measure_xls"]

_END_OF_CHAIN = 0xFFFFFFFE
_RESERVED = 0xFFFFFFFA  # ids from here on are markers, not sectors
_DIFSECT = 0xFFFFFFFC
_STREAMS = ("Workbook", "Book", "WORKBOOK", "BOOK")  # calamine's order
# Records whose data starts with (row u16, column u16) and that calamine keeps as cells.
_CELLS = frozenset({0x0203, 0x0204, 0x00D6, 0x0205, 0x027E, 0x00FD})
_FORMULA, _STRING, _MULRK, _DIMENSIONS, _BOF, _EOF = 0x0006, 0x0207, 0x00BD, 0x0200, 0x0809, 0x000A
_BOUNDSHEET, _FILEPASS, _CONTINUE = 0x0085, 0x002F, 0x003C


def _u16(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "little")


def _u32(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "little")


class _Compound:
    """calamine's Cfb::new and get_stream over the file's bytes, with bounds it lacks."""

    def __init__(self, data: bytes, limits: SpreadsheetLimits) -> None:
        if len(data) < 512 or _u16(data, 32) != 6 or _u16(data, 30) not in (9, 12):
            raise BadInput(CORRUPT)
        self.data = data
        self.size = 512 if _u16(data, 30) == 9 else 4096
        self.base = self.size  # sector 0 starts after the header
        self.max_id = len(data) // self.size
        sectors = self.max_id + 1
        fat_len, difat_len = _u32(data, 44), _u32(data, 62)  # calamine reserves room for both
        if fat_len > sectors or difat_len * 4 > limits.max_uncompressed_bytes:
            raise BadInput(CORRUPT)
        difat = list(struct.unpack_from("<109I", data, 76))
        seen: set[int] = set()
        sector = _u32(data, 68)
        while sector < _RESERVED:  # the DIFAT chain: calamine loops for ever on a cycle
            if sector in seen:
                raise BadInput(CORRUPT)
            seen.add(sector)
            difat.extend(struct.unpack(f"<{self.size // 4}I", self._sector(sector).ljust(self.size, b"\0")))
            sector = difat.pop()
        fat_sectors = [sector for sector in difat if sector < _DIFSECT]
        if len(fat_sectors) > sectors:  # the FAT would be larger than the file
            raise BadInput(CORRUPT)
        fat_bytes = b"".join(self._sector(sector) for sector in fat_sectors)
        self.fat = [entry for (entry,) in struct.iter_unpack("<I", fat_bytes[: len(fat_bytes) // 4 * 4])]
        directory = self._chain(_u32(data, 48), self.fat, self._sector, None)
        self.entries = [directory[at : at + 128] for at in range(0, len(directory) - 127, 128)]
        if not self.entries:
            raise BadInput(CORRUPT)
        self.mini = b""
        self.mini_fat: list[int] = []
        if _u32(data, 64) > 0:
            root = self.entries[0]
            self.mini = self._chain(_u32(root, 116), self.fat, self._sector, self._length(root))
            mini_fat = self._chain(_u32(data, 60), self.fat, self._sector, _u32(data, 64) * self.size)
            self.mini_fat = [
                entry for (entry,) in struct.iter_unpack("<I", mini_fat[: len(mini_fat) // 4 * 4])
            ]

    def _sector(self, sector: int) -> bytes:
        if sector > self.max_id:
            raise BadInput(CORRUPT)
        start = self.base + sector * self.size
        return self.data[start : start + self.size]

    def _mini_sector(self, sector: int) -> bytes:
        if sector * 64 + 64 > len(self.mini):  # calamine would read on from wherever the file is
            raise BadInput(CORRUPT)
        return self.mini[sector * 64 : sector * 64 + 64]

    def _length(self, entry: bytes) -> int:
        return _u32(entry, 120) if self.size == 512 else int.from_bytes(entry[120:128], "little")

    def _chain(self, sector: int, fat: list[int], read: Callable[[int], bytes], length: int | None) -> bytes:
        """A sector chain, up to ``length`` bytes; a cycle before that is corrupt (calamine would copy
        the same sectors until it had ``length`` bytes, or for ever)."""
        parts: list[bytes] = []
        copied = 0
        seen: set[int] = set()
        while sector != _END_OF_CHAIN:
            if sector in seen or sector >= len(fat):
                raise BadInput(CORRUPT)
            seen.add(sector)
            part = read(sector)
            if length is not None:
                part = part[: length - copied]
            parts.append(part)
            copied += len(part)
            if length is not None and copied >= length:
                break
            sector = fat[sector]
        return b"".join(parts)

    def stream(self) -> bytes:
        for name in _STREAMS:
            for entry in self.entries:
                raw = entry[:64].decode("utf-16-le", errors="replace")
                if raw.split("\0", 1)[0] == name:
                    length = self._length(entry)
                    if length > len(self.data):
                        raise BadInput(CORRUPT)
                    if length < 4096:
                        return self._chain(_u32(entry, 116), self.mini_fat, self._mini_sector, length)
                    return self._chain(_u32(entry, 116), self.fat, self._sector, length)
        raise BadInput(CORRUPT)


def _walk(stream: bytes, at: int) -> Iterator[tuple[int, bytes]]:
    """calamine's RecordIter from offset ``at``: (type, data) pairs, CONTINUE records folded in; it stops
    where calamine would stop with an error."""
    while len(stream) - at >= 4:
        kind, length = _u16(stream, at), _u16(stream, at + 2)
        if len(stream) - at < length + 4:
            return
        data = stream[at + 4 : at + 4 + length]
        at += 4 + length
        while len(stream) - at > 4 and _u16(stream, at) == _CONTINUE:
            length = _u16(stream, at + 2)
            if len(stream) - at < length + 4:
                return
            at += 4 + length
        yield kind, data


class _Box:
    """The bounding box of the cells calamine keeps for one sheet, and how many it keeps."""

    def __init__(self) -> None:
        self.max_row = self.max_column = -1
        self.min_column = 1 << 32
        self.entries = 0

    def add(self, row: int, first_column: int, count: int = 1) -> None:
        self.entries += count
        self.max_row = max(self.max_row, row)
        self.min_column = min(self.min_column, first_column)
        self.max_column = max(self.max_column, first_column + count - 1)


def _sheet_area(name: str, stream: bytes, at: int) -> UsedArea:
    """calamine's per-sheet loop: cells from the cell records, and the room a DIMENSIONS record reserves."""
    box = _Box()
    reserved = 0
    formula = (0, 0)
    depth, seen_bof = 0, False
    for kind, data in _walk(stream, at):
        if depth:  # a nested substream (an embedded chart): calamine skips it
            depth += {_BOF: 1, _EOF: -1}.get(kind, 0)
            continue
        if kind == _BOF:
            depth, seen_bof = (depth + 1 if seen_bof else depth), True
        elif kind == _EOF:
            break
        elif kind == _DIMENSIONS:
            if len(data) == 10:
                first, last, first_col, last_col = (_u16(data, at) for at in (0, 2, 4, 6))
            elif len(data) == 14:
                first, last = _u32(data, 0), _u32(data, 4)
                first_col, last_col = _u16(data, 8), _u16(data, 10)
            else:
                break  # calamine stops with an error
            if first_col > 0xFF or last_col < first_col:
                first_col = 0
            if last >= 1 and last_col >= 1:
                height = (last - first) & 0xFFFFFFFF  # u32 arithmetic, as calamine does it
                width = (last_col - first_col) & 0xFFFFFFFF
                reserved = max(reserved, height * width)
        elif kind in _CELLS or kind == _FORMULA:
            if len(data) < 6:
                break
            box.add(_u16(data, 0), _u16(data, 2))
            if kind == _FORMULA:
                formula = (_u16(data, 0), _u16(data, 2))
        elif kind == _STRING:
            box.add(*formula)
        elif kind == _MULRK:
            if len(data) < 6:
                break
            row, first_col, last_col = _u16(data, 0), _u16(data, 2), _u16(data, len(data) - 2)
            count = (last_col - first_col + 1) & 0xFFFF
            if len(data) != 6 + 6 * count:
                break
            if count:
                box.add(row, first_col, count)
    if box.max_row < 0:
        return UsedArea(name, entries=reserved)
    columns = box.max_column - box.min_column + 1
    return UsedArea(name, box.max_row + 1, columns, max(box.entries, reserved))


def _sheet_name(data: bytes, number: int) -> str:
    """A BoundSheet8 record's sheet name (BIFF8: a short XLUnicodeString at offset 6)."""
    if len(data) >= 8:
        length, wide = data[6], data[7] & 1
        raw = data[8 : 8 + length * (2 if wide else 1)]
        name = raw.decode("utf-16-le" if wide else "latin-1", errors="replace")
        if name.strip():
            return name
    return f"number {number}"


def measure_xls(path: Path, limits: SpreadsheetLimits) -> list[UsedArea]:
    """The used area of every sheet calamine would read from the .xls at ``path``."""
    stream = _Compound(path.read_bytes(), limits).stream()
    sheets: list[tuple[int, str]] = []
    for kind, data in _walk(stream, 0):
        if kind == _FILEPASS and _u16(data, 0) != 0:
            raise BadInput(ENCRYPTED)
        if kind == _BOUNDSHEET and len(data) >= 4:
            sheets.append((_u32(data, 0), _sheet_name(data, len(sheets) + 1)))
        elif kind == _EOF:
            break
    areas = []
    for position, name in sheets:
        if position > len(stream):
            break  # calamine panics here, before reading any further sheet
        areas.append(_sheet_area(name, stream, position))
    return areas
