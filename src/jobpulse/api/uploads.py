"""Streaming multipart uploads: the file part goes to disk chunk by chunk, and the size limit is enforced
while streaming (413 as soon as it is passed), so an upload is never held whole in memory.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from jobpulse.errors import InvalidRequest, PayloadTooLarge

__all__ = ["Upload", "UploadedFile", "receive_upload"]

_FIELD_LIMIT = 64 * 1024  # bytes per plain form field (kind, options)
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")


@dataclass
class UploadedFile:
    """The file part, saved on disk."""

    path: Path
    filename: str
    size_bytes: int
    content_type: str | None


@dataclass
class Upload:
    """The parsed form: plain fields, and the file (if the form had one)."""

    fields: dict[str, str] = field(default_factory=dict)
    file: UploadedFile | None = None


def clean_filename(raw: str) -> str:
    """The base name the user's browser sent, without any directory part, at most 255 characters."""
    name = PureWindowsPath(PurePosixPath(raw).name).name.strip().replace("\x00", "")
    return name[:255] or "upload"


def _megabytes(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.0f} MB"
    return f"{max(1, size // 1024)} KB"


class _FormReader:
    def __init__(
        self,
        dest_dir: Path,
        file_field: str,
        max_file_bytes: int,
        check_fields: Callable[[dict[str, str]], object] | None,
    ) -> None:
        self.dest_dir = dest_dir
        self.check_fields = check_fields
        self.file_field = file_field
        self.max_file_bytes = max_file_bytes
        self.upload = Upload()
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._filename: str | None = None
        self._value = bytearray()
        self._out: IO[bytes] | None = None
        self._size = 0
        self._file_part: UploadedFile | None = None

    def on_part_begin(self) -> None:
        self._headers = {}
        self._value = bytearray()
        self._filename = None
        self._out = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = params.get(b"filename")
        if raw_filename is None:
            return
        if self._name != self.file_field or self.upload.file is not None:
            raise InvalidRequest(f"Only one file, in the form field '{self.file_field}', is accepted.")
        if self.check_fields is not None:
            limit = self.check_fields(self.upload.fields)
            if isinstance(limit, int):  # the fields decide a smaller limit (a job kind's own)
                self.max_file_bytes = min(self.max_file_bytes, limit)
        self._filename = clean_filename(raw_filename.decode("utf-8", "replace"))
        suffix = _SUFFIX.fullmatch(Path(self._filename).suffix)
        self.dest_dir.mkdir(parents=True, exist_ok=True)
        path = self.dest_dir / ("input" + (suffix.group(0).lower() if suffix else ""))
        self._out = path.open("wb")
        content_type = self._headers.get(b"content-type")
        self._file_part = UploadedFile(
            path, self._filename, 0, content_type.decode("latin-1") if content_type else None
        )

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._out is not None:
            self._size += end - start
            if self._size > self.max_file_bytes:
                raise PayloadTooLarge(
                    f"The file is larger than the limit of {_megabytes(self.max_file_bytes)}."
                )
            self._out.write(data[start:end])
        else:
            self._value += data[start:end]
            if len(self._value) > _FIELD_LIMIT:
                raise InvalidRequest(f"The form field '{self._name}' is too long.")

    def on_part_end(self) -> None:
        if self._out is not None and self._file_part is not None:
            self._out.close()
            self._out = None
            self._file_part.size_bytes = self._size
            self.upload.file = self._file_part
        elif self._name:
            self.upload.fields[self._name] = self._value.decode("utf-8", "replace")

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


async def receive_upload(
    request: Request,
    dest_dir: Path,
    *,
    max_file_bytes: int,
    file_field: str = "file",
    check_fields: Callable[[dict[str, str]], object] | None = None,
) -> Upload:
    """Parse a multipart form, saving its file part as ``dest_dir/input<.ext>``.

    ``check_fields`` sees the fields sent before the file and may raise to refuse the upload before its
    bytes are read, or return an int: a smaller size limit for this file (a job kind's own). On any error
    ``dest_dir`` is removed, so a rejected upload leaves nothing behind.
    """
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidRequest("Send the file as multipart/form-data.", code="not_multipart")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_file_bytes + _FIELD_LIMIT * 4:
        raise PayloadTooLarge(f"The file is larger than the limit of {_megabytes(max_file_bytes)}.")
    reader = _FormReader(dest_dir, file_field, max_file_bytes, check_fields)
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": reader.on_part_begin,
            "on_header_field": reader.on_header_field,
            "on_header_value": reader.on_header_value,
            "on_header_end": reader.on_header_end,
            "on_headers_finished": reader.on_headers_finished,
            "on_part_data": reader.on_part_data,
            "on_part_end": reader.on_part_end,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except (InvalidRequest, ClientDisconnect):
        reader.close()
        shutil.rmtree(dest_dir, ignore_errors=True)
        raise
    except Exception as exc:  # the multipart parser's own errors: a malformed body
        reader.close()
        shutil.rmtree(dest_dir, ignore_errors=True)
        raise InvalidRequest("The multipart body is malformed.", code="malformed_multipart") from exc
    reader.close()
    return reader.upload
